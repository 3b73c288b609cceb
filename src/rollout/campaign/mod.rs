//! `Campaign`: the campaign-level state machine. It routes each input to the right device
//! record, turns record changes into `Persist` actions, and owns everything that spans devices:
//! waves, the rate limiter, the concurrency cap, retries, the abort threshold, pause / resume /
//! cancel, completion. See the module documentation of [`super`] for the contract.
//!
//! Bookkeeping (status counts, per-wave tallies, the queue of noticeable devices, the timer
//! set) is kept incrementally so one input costs O(log n), not a scan of the fleet; it is
//! rebuilt from the records on [`Campaign::resume`] and never persisted itself.
//!
//! The type, its construction, its read API and [`Campaign::handle`] live here. The behaviour
//! is split by concern into `impl Campaign` blocks in the child modules, which share the
//! private fields and import nothing from each other but the leaf `effects`:
//! - `index`: building from the stored form, the device and task indexes, and the incremental
//!   bookkeeping each record change causes (`Persist`, counts, tallies, queue, timers);
//! - `routing`: device reports (version, progress, replies to our requests) and failed
//!   publishes to their record;
//! - `presence`: online / offline, settle delays, the gateways of dialects with one upgrade per
//!   gateway, the broker link's outages and the re-sends of notices that may not have arrived;
//!
//! No part names a dialect: what differs between them is asked of the device's dialect's
//! [`crate::protocol::Capabilities`].
//! - `pull`: a device asking for its firmware;
//! - `scheduler`: timers, the pump that sends the notices whose turn has come, the notice;
//! - `gates`: `Start` and the wave plan, wave gates;
//! - `lifecycle`: abort, completion, the operator's commands, campaign state changes;
//! - `effects`: the actions every part emits (orders, logs, refusals).

mod effects;
mod gates;
mod index;
mod lifecycle;
mod presence;
mod pull;
mod routing;
mod scheduler;

use std::collections::{BTreeSet, HashMap};

use super::device;
use super::policy::Policy;
use super::rate::TokenBucket;
use super::record::{CampaignSpec, CampaignState, PersistedCampaign, Target, TargetRecord};
use super::snapshot::{CampaignSnapshot, Counts, DeviceLines, WaveSnapshot};
use super::waves::WaveTally;
use super::{Action, CampaignId, IdSource, Input, MAX_TARGETS, RolloutError, Timestamp};
use crate::device_id::{DeviceId, DialectId};
use crate::protocol::{Capabilities, Event, registry};

/// What the engine knows and the campaign does not, to address one notice.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NoticeRoute {
    /// The gateway a sub-device is attached to (`None` for a directly connected device, or a
    /// gateway itself).
    pub gateway: Option<DeviceId>,
    /// Message id (Alibaba and FogCloud `id`).
    pub msg_id: i64,
    /// When the notice is built (DJI `timestamp`).
    pub timestamp_ms: i64,
    /// The device's own download link (a per-device link of the embedded firmware server);
    /// `None`: the offer's URL, as it is (an operator-given external URL).
    pub download_url: Option<String>,
}

/// One firmware offer rolled out to a set of devices. See [`super`] for the contract.
#[derive(Debug, Clone)]
pub struct Campaign {
    id: CampaignId,
    spec: CampaignSpec,
    state: CampaignState,
    devices: Vec<TargetRecord>,
    /// Runtime only: `devices` as the snapshot shows them, kept in step by `update`.
    lines: DeviceLines,
    /// Runtime only: indexes of the records changed since [`Campaign::take_changed`] was last
    /// called (each once: `changed_mark`), so the engine refreshes only their rows.
    changed: Vec<usize>,
    changed_mark: Vec<bool>,
    /// Runtime only: whether each device is connected.
    online: Vec<bool>,
    /// Runtime only: a device that just came online is not noticed before this (it may not
    /// have subscribed yet: some SDKs publish their version first). Not persisted: after a
    /// restart every device is new to the console again.
    settle_until: Vec<Option<Timestamp>>,
    /// Runtime only: when each device was last heard in this run (`None`: not since the console
    /// started). Orders the devices into waves at the start.
    heard_at: Vec<Option<Timestamp>>,
    /// Runtime only: for devices whose dialect runs one upgrade per gateway
    /// ([`Capabilities::one_upgrade_per_gateway`]), the gateway each upgrades through (itself
    /// for a gateway): devices of one gateway are noticed one after the other (a DJI dock
    /// answers a second `ota_create` with 312014). `None` for other dialects.
    gateways: Vec<Option<DeviceId>>,
    /// Runtime only: `gateways` came from the fleet's topology ([`Campaign::set_gateways`]),
    /// not from the default guess, so reports from any other gateway can be refused.
    gateways_known: bool,
    by_device: HashMap<DeviceId, usize>,
    /// Every task key ever issued, per dialect, to the device it was issued to (reports on an
    /// older one are recognised and ignored). Per dialect: keys of different dialects may be
    /// equal (a counter's "1", a bid "1" sent by anyone who may publish on a dock's topic), and
    /// one dialect's report must never reach another's device.
    by_key: HashMap<DialectId, HashMap<String, usize>>,
    counts: Counts,
    wave_members: Vec<Vec<usize>>,
    wave_tallies: Vec<WaveTally>,
    current_wave: Option<u32>,
    /// Pending, online devices of opened waves, in target order (see `refresh_queue`).
    queue: BTreeSet<usize>,
    /// Every device timer instant not fired yet.
    timers: BTreeSet<(Timestamp, usize)>,
    bucket: TokenBucket,
    /// The last pump stopped for want of a token while a device may have been ready.
    rate_blocked: bool,
    blocked_wave_logged: Option<u32>,
    /// The next [`crate::protocol::KeySource::Counter`] key.
    next_counter_key: u64,
    /// Runtime only: since when the console's broker link is down (timers and notices held).
    broker_lost_at: Option<Timestamp>,
    /// Runtime only: notices in flight may not have reached their devices (the console
    /// restarted, or its link was down): re-send them to `noticed` devices at the next chance.
    resend_noticed: bool,
    now: Timestamp,
    created_at: Timestamp,
    started_at: Option<Timestamp>,
    finished_at: Option<Timestamp>,
}

impl Campaign {
    /// A new campaign in `Draft`. Targets are normalised to the campaign's module and
    /// de-duplicated (first occurrence wins, keeping the operator's order).
    pub fn new(
        id: CampaignId,
        spec: CampaignSpec,
        targets: Vec<Target>,
        now: Timestamp,
    ) -> Result<Self, RolloutError> {
        validate_spec(&spec)?;
        if targets.is_empty() {
            return Err(RolloutError::NoTargets);
        }
        if targets.len() > MAX_TARGETS {
            return Err(RolloutError::TooManyTargets {
                count: targets.len(),
                max: MAX_TARGETS,
            });
        }
        let mut devices = Vec::with_capacity(targets.len());
        let mut online = Vec::with_capacity(targets.len());
        let mut heard_at = Vec::with_capacity(targets.len());
        let mut seen = std::collections::HashSet::with_capacity(targets.len());
        for target in targets {
            let key = target.device.device().with_module(spec.module.as_deref())?;
            if !seen.insert(key.clone()) {
                continue;
            }
            let position = u32::try_from(devices.len()).unwrap_or(u32::MAX);
            devices.push(TargetRecord::new(key, position, target.version));
            online.push(target.online);
            heard_at.push(target.heard_at);
        }
        let persisted = PersistedCampaign {
            id,
            spec,
            state: CampaignState::Draft,
            current_wave: None,
            created_at: now,
            started_at: None,
            finished_at: None,
            devices,
        };
        let mut campaign = Self::build(persisted, online, now)?;
        campaign.heard_at = heard_at;
        Ok(campaign)
    }

    /// Rebuilds a campaign from the store. Succeeded devices stay succeeded; in-flight devices
    /// stay in flight with their deadlines (timers that passed while the console was down fire
    /// on the first input). `is_online` says which devices are connected now.
    pub fn resume(
        persisted: PersistedCampaign,
        now: Timestamp,
        is_online: &dyn Fn(&DeviceId) -> bool,
    ) -> Result<Self, RolloutError> {
        validate_spec(&persisted.spec)?;
        let corrupt = |detail: String| RolloutError::Corrupt {
            id: persisted.id,
            detail,
        };
        if persisted.devices.is_empty() {
            return Err(corrupt("it has no devices".into()));
        }
        if persisted.devices.len() > MAX_TARGETS {
            return Err(corrupt(format!("{} devices", persisted.devices.len())));
        }
        let mut persisted = persisted;
        persisted.devices.sort_by_key(|d| d.position);
        let timeout_ms = persisted.spec.policy.device_timeout_ms();
        let settle_ms = persisted.spec.policy.settle_ms;
        for rec in &mut persisted.devices {
            rec.percent = rec.percent.min(100);
            if rec.status.in_flight() && rec.deadline_at.is_none() {
                rec.deadline_at = Some(now.plus_ms(timeout_ms));
            }
            // An ack wait that ran out while the console was down must not fire before the
            // reports the broker kept for the console's session have had time to arrive.
            if settle_ms > 0 && caps(&rec.device).ack.by_first_report() {
                device::hold_ack_wait(rec, now.plus_ms(settle_ms));
            }
        }
        let online = persisted
            .devices
            .iter()
            .map(|d| is_online(&d.device))
            .collect();
        let mut campaign = Self::build(persisted, online, now)?;
        // The console may have died between recording a notice and publishing it.
        campaign.resend_noticed = true;
        Ok(campaign)
    }

    pub fn id(&self) -> CampaignId {
        self.id
    }

    pub fn state(&self) -> CampaignState {
        self.state
    }

    pub fn spec(&self) -> &CampaignSpec {
        &self.spec
    }

    pub fn policy(&self) -> &Policy {
        &self.spec.policy
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// The records, in target order.
    pub fn devices(&self) -> &[TargetRecord] {
        &self.devices
    }

    /// The record of a device (any module given is replaced by the campaign's).
    pub fn device(&self, device: &DeviceId) -> Option<&TargetRecord> {
        self.index_of(device).and_then(|idx| self.devices.get(idx))
    }

    /// Whether this device (with the campaign's module) is one of the targets.
    pub fn is_target(&self, device: &DeviceId) -> bool {
        self.index_of(device).is_some()
    }

    /// Everything the store keeps, for `Store::create_campaign`.
    pub fn persisted(&self) -> PersistedCampaign {
        PersistedCampaign {
            id: self.id,
            spec: self.spec.clone(),
            state: self.state,
            current_wave: self.current_wave,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            devices: self.devices.clone(),
        }
    }

    /// When the engine must feed `Input::Tick` next; `None` when only an input can change
    /// anything.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        if self.broker_lost_at.is_some() {
            return None;
        }
        let timer = self.timers.first().map(|(t, _)| *t);
        let token = (self.rate_blocked && self.state == CampaignState::Running)
            .then(|| self.bucket.next_token_at(self.now));
        match (timer, token) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The UI's and the JSON report's view.
    pub fn snapshot(&self) -> CampaignSnapshot {
        CampaignSnapshot {
            id: self.id,
            name: self.spec.name.clone(),
            state: self.state,
            target_version: self.spec.offer.version.clone(),
            module: self.spec.module.clone(),
            package_sha256: self.spec.offer.sha256.clone(),
            waves: WaveSnapshot {
                current: self.current_wave,
                count: u32::try_from(self.wave_members.len()).unwrap_or(u32::MAX),
                blocked: self.current_wave_blocked(),
            },
            counts: self.counts,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            devices: self.lines.clone(),
        }
    }

    /// Feeds one input at `now`; returns what to do, in order (see [`super::Action`]).
    pub fn handle(&mut self, input: Input, now: Timestamp, ids: &mut dyn IdSource) -> Vec<Action> {
        self.now = self.now.max(now);
        let mut out = Vec::new();
        // Before the timers: what fell due after the loss must not fire as if we had listened.
        if matches!(input, Input::BrokerLost) {
            self.broker_lost(&mut out);
        }
        self.fire_timers(ids, &mut out);
        let mut reply_to = None;
        match input {
            Input::Start => self.start(&mut out),
            Input::Event(event) => match event {
                Event::Version(v) => self.on_version(&v, &mut out),
                Event::Progress(p) => self.on_progress(&p, &mut out),
                Event::Reply(r) => self.on_reply(&r, &mut out),
                Event::FirmwareGet(g) => reply_to = self.on_firmware_get(g),
                // The engine's business: it answers, and tells the campaign who is online.
                Event::Topology(_)
                | Event::Answer(_)
                | Event::Attribute { .. }
                | Event::Heard { .. } => {}
            },
            Input::Seen { device, online } => {
                if let Some(idx) = self.index_of(&device) {
                    self.set_online(idx, online, &mut out);
                }
            }
            Input::Tick | Input::BrokerLost => {}
            Input::BrokerBack => self.broker_back(&mut out),
            Input::Pause => self.command_state(
                CampaignState::Running,
                CampaignState::Paused,
                "paused by the operator",
                &mut out,
            ),
            Input::Resume => self.command_state(
                CampaignState::Paused,
                CampaignState::Running,
                "resumed by the operator",
                &mut out,
            ),
            Input::Cancel => self.cancel(&mut out),
            Input::AdvanceWave => self.advance_wave_command(&mut out),
            Input::RetryFailed => self.retry_failed(&mut out),
            Input::PublishFailed {
                device,
                attempt,
                error,
            } => self.on_publish_failed(&device, attempt, &error, &mut out),
        }
        self.settle(ids, &mut out);
        if let Some((request, idx)) = reply_to {
            self.reply_firmware_get(request, idx, ids, &mut out);
        }
        out
    }
}

fn validate_spec(spec: &CampaignSpec) -> Result<(), RolloutError> {
    spec.policy.validate()?;
    if spec.offer.version.trim().is_empty() {
        return Err(RolloutError::NoTargetVersion);
    }
    if spec.offer.version.len() > 128 {
        return Err(RolloutError::TargetVersionTooLong(
            spec.offer.version.chars().take(40).collect(),
        ));
    }
    if let Some(module) = &spec.module {
        // Validates the module as a topic segment once, so later `with_module` calls cannot fail.
        if !crate::device_id::is_default_module(module) {
            crate::device_id::Segment::new("module", module)?;
        }
    }
    Ok(())
}

/// What the dialect of `device` can do.
fn caps(device: &DeviceId) -> &'static Capabilities {
    registry::capabilities(device.dialect())
}

impl Campaign {
    /// The device the task `key` of `dialect` was issued to.
    fn key_owner(&self, dialect: DialectId, key: &str) -> Option<usize> {
        self.by_key.get(&dialect)?.get(key).copied()
    }

    fn note_key(&mut self, dialect: DialectId, key: String, idx: usize) {
        self.by_key.entry(dialect).or_default().insert(key, idx);
    }
}
