//! Indexes and bookkeeping: building a [`Campaign`] from its stored form (the device index, the
//! task key index, wave members, the current wave), finding a device's record, and, after every
//! record change, the `Persist` it causes and the counts, per-wave tallies, queue of noticeable
//! devices, timer set, snapshot lines and change list it moves. None of this is persisted: it
//! is rebuilt from the records on [`Campaign::resume`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::effects::{log, order_for};
use super::{Campaign, caps};
use crate::device_id::DeviceId;
use crate::i18n::tr;
use crate::protocol::KeySource;
use crate::rollout::device::{DeviceCtx, Step};
use crate::rollout::note::Note;
use crate::rollout::rate::TokenBucket;
use crate::rollout::record::{
    CampaignState, Change, DeviceStatus, PersistedCampaign, TargetRecord, Transition,
};
use crate::rollout::snapshot::{Counts, DeviceSnapshot};
use crate::rollout::waves::WaveTally;
use crate::rollout::{Action, LogLevel, MAX_TARGETS, RolloutError, Timestamp};

impl Campaign {
    pub(super) fn build(
        p: PersistedCampaign,
        online: Vec<bool>,
        now: Timestamp,
    ) -> Result<Self, RolloutError> {
        let corrupt = |detail: String| RolloutError::Corrupt { id: p.id, detail };
        let mut by_device = HashMap::with_capacity(p.devices.len());
        let mut by_key = HashMap::new();
        let mut next_counter_key = 1u64;
        let mut wave_count = 0usize;
        for (idx, rec) in p.devices.iter().enumerate() {
            if by_device.insert(rec.device.clone(), idx).is_some() {
                return Err(corrupt(tr!(
                    "error.rollout.corrupt.twice",
                    device = rec.device
                )));
            }
            if let Some(key) = &rec.task.key {
                let dialect = rec.device.dialect();
                if caps(&rec.device).task_key.source == KeySource::Counter
                    && let Ok(n) = key.parse::<u64>()
                {
                    next_counter_key = next_counter_key.max(n.saturating_add(1));
                }
                by_key
                    .entry(dialect)
                    .or_insert_with(HashMap::new)
                    .insert(key.clone(), idx);
            }
            if let Some(w) = rec.wave {
                let w = usize::try_from(w).map_err(|_| corrupt(format!("wave {w}")))?;
                if w >= MAX_TARGETS {
                    return Err(corrupt(tr!(
                        "error.rollout.corrupt.in_wave",
                        device = rec.device,
                        wave = w
                    )));
                }
                wave_count = wave_count.max(w + 1);
            }
        }
        let mut wave_members = vec![Vec::new(); wave_count];
        for (idx, rec) in p.devices.iter().enumerate() {
            if let Some(members) = rec.wave.and_then(|w| wave_members.get_mut(w as usize)) {
                members.push(idx);
            }
        }
        let current_wave = match (p.current_wave, wave_count) {
            (_, 0) => None,
            (Some(w), n) => Some(w.min(u32::try_from(n - 1).unwrap_or(u32::MAX))),
            // Started but the wave pointer was lost: the first wave is the safe guess.
            (None, _) if p.state != CampaignState::Draft => Some(0),
            (None, _) => None,
        };
        let gateways = p
            .devices
            .iter()
            .map(|d| {
                caps(&d.device)
                    .one_upgrade_per_gateway
                    .then(|| d.device.device())
            })
            .collect();
        let mut campaign = Campaign {
            id: p.id,
            gateways,
            gateways_known: false,
            settle_until: vec![None; online.len()],
            bucket: TokenBucket::new(p.spec.policy.rate, now),
            spec: p.spec,
            state: p.state,
            counts: Counts::from_statuses(p.devices.iter().map(|d| d.status)),
            heard_at: vec![None; p.devices.len()],
            lines: p
                .devices
                .iter()
                .map(|r| Arc::new(DeviceSnapshot::from(r)))
                .collect(),
            changed: Vec::new(),
            changed_mark: vec![false; p.devices.len()],
            devices: p.devices,
            online,
            by_device,
            by_key,
            wave_tallies: vec![WaveTally::default(); wave_count],
            wave_members,
            current_wave,
            queue: BTreeSet::new(),
            timers: BTreeSet::new(),
            rate_blocked: false,
            blocked_wave_logged: None,
            next_counter_key,
            broker_lost_at: None,
            resend_noticed: false,
            now,
            created_at: p.created_at,
            started_at: p.started_at,
            finished_at: p.finished_at,
        };
        for idx in 0..campaign.devices.len() {
            campaign.track(idx, None);
        }
        Ok(campaign)
    }

    /// The snapshot line of a device (any module given is replaced by the campaign's).
    pub fn line(&self, device: &DeviceId) -> Option<&Arc<DeviceSnapshot>> {
        self.index_of(device).and_then(|idx| self.lines.get(idx))
    }

    /// The devices whose records changed since the last call (with the campaign's module),
    /// each once.
    pub fn take_changed(&mut self) -> Vec<DeviceId> {
        let changed = std::mem::take(&mut self.changed);
        changed
            .into_iter()
            .filter_map(|idx| {
                if let Some(mark) = self.changed_mark.get_mut(idx) {
                    *mark = false;
                }
                self.devices.get(idx).map(|r| r.device.clone())
            })
            .collect()
    }

    pub(super) fn index_of(&self, device: &DeviceId) -> Option<usize> {
        let key = device
            .device()
            .with_module(self.spec.module.as_deref())
            .ok()?;
        self.by_device.get(&key).copied()
    }

    /// Runs one device step and emits what it changed: `Persist` (status change or row update),
    /// then its logs, then a re-send if asked.
    pub(super) fn update<F>(&mut self, idx: usize, out: &mut Vec<Action>, f: F) -> Step
    where
        F: FnOnce(&mut TargetRecord, &DeviceCtx<'_>) -> Step,
    {
        let ctx = DeviceCtx {
            target_version: &self.spec.offer.version,
            policy: &self.spec.policy,
            now: self.now,
        };
        let Some(rec) = self.devices.get_mut(idx) else {
            return Step::default();
        };
        let before = rec.clone();
        let step = f(rec, &ctx);
        let after = rec.clone();
        if before != after {
            let change = if before.status != after.status {
                let detail = step.detail.clone().unwrap_or(Note::StatusChange {
                    from: before.status,
                    to: after.status,
                });
                Change::Device {
                    from: before.status,
                    record: after.clone(),
                    detail,
                }
            } else {
                Change::Update {
                    record: after.clone(),
                }
            };
            out.push(Action::Persist(Box::new(Transition {
                campaign: self.id,
                at: self.now,
                change,
            })));
            self.track(idx, Some(&before));
            self.lines.set(idx, Arc::new(DeviceSnapshot::from(&after)));
            if let Some(mark) = self.changed_mark.get_mut(idx)
                && !*mark
            {
                *mark = true;
                self.changed.push(idx);
            }
        }
        for line in &step.logs {
            log(out, Some(&after.device), LogLevel::Info, line.clone());
        }
        if step.resend {
            out.push(Action::SendUpgrade(order_for(&after, true)));
        }
        step
    }

    /// Updates counts, tallies, queue and timers after a record changed from `before`.
    fn track(&mut self, idx: usize, before: Option<&TargetRecord>) {
        let Some(rec) = self.devices.get(idx) else {
            return;
        };
        if let Some(before) = before {
            self.counts.remove(before.status);
            if let Some(tally) = before
                .wave
                .and_then(|w| self.wave_tallies.get_mut(w as usize))
            {
                untally(tally, before.status);
            }
            for t in timers_of(before) {
                self.timers.remove(&(t, idx));
            }
        }
        // `build` counted every status already; only changes are counted here.
        if before.is_some() {
            self.counts.add(rec.status);
        }
        if let Some(tally) = rec.wave.and_then(|w| self.wave_tallies.get_mut(w as usize)) {
            tally_add(tally, rec.status);
        }
        // Timers already due were fired at the top of `handle` (or, at build time, fire on the
        // first input); re-inserting a due one after an unrelated change would make
        // `next_deadline` point at the past forever.
        for t in timers_of(rec).filter(|t| before.is_none() || *t > self.now) {
            self.timers.insert((t, idx));
        }
        self.refresh_queue(idx);
    }

    /// The queue holds the pending, online devices of opened waves while the campaign may still
    /// notice: offline devices stay out of it, so a fleet with many of them offline does not
    /// cost a scan per input.
    pub(super) fn refresh_queue(&mut self, idx: usize) {
        let Some(rec) = self.devices.get(idx) else {
            return;
        };
        let opened = matches!((rec.wave, self.current_wave), (Some(w), Some(c)) if w <= c);
        let online = self.online.get(idx).copied().unwrap_or(false);
        if rec.status == DeviceStatus::Pending && opened && online && !self.state.is_finished() {
            self.queue.insert(idx);
        } else {
            self.queue.remove(&idx);
        }
    }
}

fn timers_of(rec: &TargetRecord) -> impl Iterator<Item = Timestamp> {
    let in_flight = rec.status.in_flight();
    let deadline = rec.deadline_at.filter(|_| in_flight);
    let reply = rec.reply_wait.map(|w| w.deadline_at).filter(|_| in_flight);
    let retry = rec.retry_at.filter(|_| rec.status == DeviceStatus::Pending);
    [deadline, reply, retry].into_iter().flatten()
}

fn tally_add(tally: &mut WaveTally, status: DeviceStatus) {
    tally.members += 1;
    if matches!(status, DeviceStatus::Skipped | DeviceStatus::Canceled) {
        tally.excluded += 1;
    }
    if status == DeviceStatus::Succeeded {
        tally.succeeded += 1;
    }
    if status.is_terminal() {
        tally.finished += 1;
    }
}

fn untally(tally: &mut WaveTally, status: DeviceStatus) {
    tally.members = tally.members.saturating_sub(1);
    if matches!(status, DeviceStatus::Skipped | DeviceStatus::Canceled) {
        tally.excluded = tally.excluded.saturating_sub(1);
    }
    if status == DeviceStatus::Succeeded {
        tally.succeeded = tally.succeeded.saturating_sub(1);
    }
    if status.is_terminal() {
        tally.finished = tally.finished.saturating_sub(1);
    }
}
