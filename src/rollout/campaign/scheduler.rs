//! Scheduling: firing due timers (and scheduling retries after a device outcome), the pass run
//! after every input (abort check, wave gates, pump, completion), the pump that sends the
//! notices whose turn has come under the rate limit, the concurrency cap and the one-upgrade-
//! per-gateway rule, issuing each notice's task key, and building the protocol notice for an
//! order.

use std::collections::HashSet;

use super::effects::order_for;
use super::{Campaign, NoticeRoute, caps};
use crate::device_id::DeviceId;
use crate::protocol::{KeySource, NoticeAddress, UpgradeNotice};
use crate::rollout::device;
use crate::rollout::record::{CampaignState, DeviceStatus, TaskRecord};
use crate::rollout::{Action, IdSource, UpgradeOrder};

/// Queued devices looked at per step of [`Campaign::pump`].
const PUMP_BATCH: usize = 64;

impl Campaign {
    /// The protocol notice for an order this campaign emitted.
    pub fn build_notice(&self, order: &UpgradeOrder, route: &NoticeRoute) -> UpgradeNotice {
        let address = NoticeAddress {
            msg_id: route.msg_id,
            timestamp_ms: route.timestamp_ms,
            gateway: route.gateway.clone(),
            task: order.task.clone(),
            exchange_id: order.exchange_id.clone(),
            device_timeout_ms: Some(self.spec.policy.device_timeout_ms()),
        };
        let mut offer = self.spec.offer.clone();
        if let Some(url) = &route.download_url {
            offer.url.clone_from(url);
        }
        UpgradeNotice {
            device: order.device.clone(),
            offer,
            address,
            settings: self.spec.settings.for_dialect(order.device.dialect()),
        }
    }

    /// A failed or timed-out device gets its retry scheduled while the campaign may still
    /// notice devices.
    pub(super) fn after_device_outcome(&mut self, idx: usize, out: &mut Vec<Action>) {
        let retrying = matches!(self.state, CampaignState::Running | CampaignState::Paused);
        let needs = self
            .devices
            .get(idx)
            .is_some_and(|rec| matches!(rec.status, DeviceStatus::Failed | DeviceStatus::TimedOut));
        if retrying && needs {
            self.update(idx, out, |rec, ctx| {
                device::schedule_retry(rec, ctx).unwrap_or_default()
            });
        }
    }

    pub(super) fn fire_timers(&mut self, ids: &mut dyn IdSource, out: &mut Vec<Action>) {
        if self.broker_lost_at.is_some() {
            return;
        }
        let mut due = Vec::new();
        while let Some(&(t, idx)) = self.timers.first() {
            if t > self.now {
                break;
            }
            self.timers.pop_first();
            due.push(idx);
        }
        due.sort_unstable();
        due.dedup();
        for idx in due {
            self.update(idx, out, |rec, ctx| {
                device::on_timer(rec, ctx, &mut || ids.uuid())
            });
            self.after_device_outcome(idx, out);
        }
    }

    /// After every input: abort check, wave gate, notices, completion.
    pub(super) fn settle(&mut self, ids: &mut dyn IdSource, out: &mut Vec<Action>) {
        if self.resend_noticed && self.broker_lost_at.is_none() {
            self.resend_noticed = false;
            if self.spec.policy.settle_ms > 0 {
                self.await_noticed_answers(out);
            } else {
                self.resend_to_noticed(out);
            }
        }
        self.check_abort(out);
        // Skips decided while noticing can complete a wave: go round until no wave opens
        // (bounded by the number of waves).
        for _ in 0..=self.wave_members.len() {
            let wave = self.current_wave;
            self.open_ready_waves(out);
            let skipped = self.pump(ids, out);
            if !skipped && self.current_wave == wave {
                break;
            }
        }
        self.check_complete(out);
    }

    /// Sends the notices whose turn has come; returns whether it skipped a device on the way.
    fn pump(&mut self, ids: &mut dyn IdSource, out: &mut Vec<Action>) -> bool {
        self.rate_blocked = false;
        let mut skipped = false;
        if self.state != CampaignState::Running
            || self.queue.is_empty()
            || self.broker_lost_at.is_some()
        {
            return skipped;
        }
        let max = usize::try_from(self.spec.policy.max_in_flight).unwrap_or(usize::MAX);
        if self.counts.in_flight() >= max {
            return skipped;
        }
        if self.bucket.next_token_at(self.now) > self.now {
            // Something is queued: look again when the next token is there.
            self.rate_blocked = true;
            return skipped;
        }
        // Taken from the queue a few at a time, not all 100,000 on every input: a turn sends
        // what the rate and the concurrency cap allow, and stops there.
        let mut cursor: Option<usize> = None;
        // Gateways with an upgrade running (a DJI dock and its drone), computed when a
        // candidate first has a gateway: it takes a pass over every target.
        let mut busy: Option<HashSet<DeviceId>> = None;
        'queue: loop {
            let batch: Vec<usize> = match cursor {
                None => self.queue.iter().take(PUMP_BATCH).copied().collect(),
                Some(last) => self
                    .queue
                    .range(last + 1..)
                    .take(PUMP_BATCH)
                    .copied()
                    .collect(),
            };
            let Some(&last) = batch.last() else {
                break;
            };
            cursor = Some(last);
            for idx in batch {
                if self.counts.in_flight() >= max {
                    break 'queue;
                }
                let Some(rec) = self.devices.get(idx) else {
                    continue;
                };
                if !self.online.get(idx).copied().unwrap_or(false)
                    || rec.retry_at.is_some_and(|t| t > self.now)
                    || self.settling(idx)
                {
                    continue;
                }
                if let Some(reason) =
                    device::skip_reason(rec, &self.spec.offer.version, &self.spec.policy)
                {
                    self.update(idx, out, |rec, _| device::skip(rec, reason));
                    skipped = true;
                    continue;
                }
                if !self.spec.policy.only_from_versions.is_empty() && rec.from_version.is_none() {
                    continue;
                }
                let gateway = self.gateways.get(idx).cloned().flatten();
                if let Some(g) = &gateway {
                    let busy = busy
                        .get_or_insert_with(|| self.busy_gateways().into_iter().cloned().collect());
                    if busy.contains(g) {
                        continue;
                    }
                }
                if !self.bucket.try_take(self.now) {
                    self.rate_blocked = true;
                    break 'queue;
                }
                self.send_notice(idx, ids, out);
                if let (Some(g), Some(busy)) = (gateway, busy.as_mut()) {
                    busy.insert(g);
                }
            }
        }
        skipped
    }

    pub(super) fn send_notice(
        &mut self,
        idx: usize,
        ids: &mut dyn IdSource,
        out: &mut Vec<Action>,
    ) {
        let Some(rec) = self.devices.get(idx) else {
            return;
        };
        let caps = caps(&rec.device);
        let dialect = rec.device.dialect();
        let key = match caps.task_key.source {
            KeySource::None => None,
            KeySource::Counter => {
                let key = self.next_counter_key.to_string();
                self.next_counter_key = self.next_counter_key.saturating_add(1);
                Some(key)
            }
            KeySource::Uuid => Some(ids.uuid()),
        };
        let exchange = (!caps.ack.by_first_report()).then(|| ids.uuid());
        let task = match key {
            Some(key) => {
                self.note_key(dialect, key.clone(), idx);
                TaskRecord::keyed(key, exchange)
            }
            None => TaskRecord {
                key: None,
                exchange,
            },
        };
        self.update(idx, out, |rec, ctx| device::notice(rec, task, ctx));
        if let Some(rec) = self.devices.get(idx) {
            out.push(Action::SendUpgrade(order_for(rec, false)));
        }
    }
}
