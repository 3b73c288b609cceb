//! `Campaign`: the campaign-level state machine. It routes each input to the right device
//! record, turns record changes into `Persist` actions, and owns everything that spans devices:
//! waves, the rate limiter, the concurrency cap, retries, the abort threshold, pause / resume /
//! cancel, completion. See the module documentation of [`super`] for the contract.
//!
//! Bookkeeping (status counts, per-wave tallies, the queue of noticeable devices, the timer
//! set) is kept incrementally so one input costs O(log n), not a scan of the fleet; it is
//! rebuilt from the records on [`Campaign::resume`] and never persisted itself.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::device::{self, DeviceCtx, Step};
use super::policy::Policy;
use super::rate::TokenBucket;
use super::record::{
    CampaignSpec, CampaignState, Change, DeviceRecord, DeviceStatus, PersistedCampaign, Target,
    TaskRecord, Transition,
};
use super::snapshot::{CampaignSnapshot, Counts, DeviceSnapshot, WaveSnapshot};
use super::waves::{self, WaveTally};
use super::{
    Action, CampaignId, DjiExchange, IdSource, Input, LogLevel, MAX_TARGETS, RolloutError,
    Timestamp, UpgradeOrder,
};
use crate::device_id::{DeviceId, Dialect};
use crate::protocol::{
    DialectOptions, Event, FirmwareGet, ProgressReport, ServiceReply, TaskRef, UpgradeNotice,
    VersionReport,
};

/// What the engine knows and the campaign does not, to address one notice.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NoticeRoute {
    /// FogCloud: the gateway of a sub-device (`None` for a directly connected device). DJI: the
    /// dock the drone is attached to (`None` when the device is the dock itself).
    pub gateway: Option<DeviceId>,
    /// Alibaba / FogCloud message id.
    pub msg_id: i64,
    /// DJI `timestamp`.
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
    devices: Vec<DeviceRecord>,
    /// Runtime only: whether each device is connected.
    online: Vec<bool>,
    /// Runtime only: a device that just came online is not noticed before this (it may not
    /// have subscribed yet: some SDKs publish their version first). Not persisted: after a
    /// restart every device is new to the console again.
    settle_until: Vec<Option<Timestamp>>,
    /// Runtime only: when each device was last heard in this run (`None`: not since the console
    /// started). Orders the devices into waves at the start.
    heard_at: Vec<Option<Timestamp>>,
    /// Runtime only: the DJI dock each DJI device upgrades through (itself for a dock). A dock
    /// runs one OTA task at a time and answers a second `ota_create` with 312014, so devices of
    /// one dock are noticed one after the other. `None` for other dialects.
    docks: Vec<Option<DeviceId>>,
    /// Runtime only: `docks` came from the fleet's topology ([`Campaign::set_gateways`]), not
    /// from the default guess, so DJI reports from any other dock can be refused.
    docks_known: bool,
    by_device: HashMap<DeviceId, usize>,
    /// Every bid and FogCloud task_id ever issued, to the device it was issued to (reports on
    /// an older one are recognised and ignored).
    by_bid: HashMap<String, usize>,
    by_task_id: HashMap<String, usize>,
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
    next_task_id: u64,
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
            devices.push(DeviceRecord::new(key, position, target.version));
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
            if settle_ms > 0 && rec.device.dialect() != Dialect::Dji {
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

    fn build(
        p: PersistedCampaign,
        online: Vec<bool>,
        now: Timestamp,
    ) -> Result<Self, RolloutError> {
        let corrupt = |detail: String| RolloutError::Corrupt { id: p.id, detail };
        let mut by_device = HashMap::with_capacity(p.devices.len());
        let mut by_bid = HashMap::new();
        let mut by_task_id = HashMap::new();
        let mut next_task_id = 1u64;
        let mut wave_count = 0usize;
        for (idx, rec) in p.devices.iter().enumerate() {
            if by_device.insert(rec.device.clone(), idx).is_some() {
                return Err(corrupt(format!("device {} appears twice", rec.device)));
            }
            match &rec.task {
                TaskRecord::TaskId(t) => {
                    if let Ok(n) = t.parse::<u64>() {
                        next_task_id = next_task_id.max(n.saturating_add(1));
                    }
                    by_task_id.insert(t.clone(), idx);
                }
                TaskRecord::Dji { bid, .. } => {
                    by_bid.insert(bid.clone(), idx);
                }
                TaskRecord::None => {}
            }
            if let Some(w) = rec.wave {
                let w = usize::try_from(w).map_err(|_| corrupt(format!("wave {w}")))?;
                if w >= MAX_TARGETS {
                    return Err(corrupt(format!("device {} is in wave {w}", rec.device)));
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
        let docks = p
            .devices
            .iter()
            .map(|d| (d.device.dialect() == Dialect::Dji).then(|| d.device.device()))
            .collect();
        let mut campaign = Campaign {
            id: p.id,
            docks,
            docks_known: false,
            settle_until: vec![None; online.len()],
            bucket: TokenBucket::new(p.spec.policy.rate, now),
            spec: p.spec,
            state: p.state,
            counts: Counts::from_statuses(p.devices.iter().map(|d| d.status)),
            heard_at: vec![None; p.devices.len()],
            devices: p.devices,
            online,
            by_device,
            by_bid,
            by_task_id,
            wave_tallies: vec![WaveTally::default(); wave_count],
            wave_members,
            current_wave,
            queue: BTreeSet::new(),
            timers: BTreeSet::new(),
            rate_blocked: false,
            blocked_wave_logged: None,
            next_task_id,
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

    /// Tells the campaign which dock each DJI drone belongs to (`gateway_of` answers from the
    /// fleet's topology), so that a dock and its drone are never upgraded at the same time.
    pub fn set_gateways(&mut self, gateway_of: &dyn Fn(&DeviceId) -> Option<DeviceId>) {
        for (rec, dock) in self.devices.iter().zip(self.docks.iter_mut()) {
            if rec.device.dialect() == Dialect::Dji {
                *dock = Some(gateway_of(&rec.device).unwrap_or_else(|| rec.device.device()));
            }
        }
        self.docks_known = true;
    }

    /// The engine last heard `device` at `heard_at`, before the campaign could see it. Alibaba
    /// and FogCloud devices report only when they connect, so a report less than `settle_ms`
    /// ago may be one sent before the device subscribed: its notice waits until it has settled.
    /// (DJI docks report all the time and have their own reply wait: not held.)
    pub fn note_heard(&mut self, device: &DeviceId, heard_at: Timestamp) {
        if let Some(idx) = self.index_of(device) {
            self.start_settle(idx, heard_at);
        }
    }

    /// The one place a settle delay starts: a device heard at `heard_at` is not noticed before
    /// `heard_at + settle_ms`, since SDKs that report before they subscribe would lose it. DJI
    /// devices are never held (docks report all the time; `ota_create` has its own reply wait).
    fn start_settle(&mut self, idx: usize, heard_at: Timestamp) {
        let until = heard_at.plus_ms(self.spec.policy.settle_ms);
        let dji = self
            .devices
            .get(idx)
            .is_none_or(|rec| rec.device.dialect() == Dialect::Dji);
        if dji || until <= self.now {
            return;
        }
        if let Some(slot) = self.settle_until.get_mut(idx) {
            *slot = Some(until);
            // Wakes the scheduler when the delay is over (the device timer does nothing then).
            self.timers.insert((until, idx));
        }
    }

    /// Docks with a device in flight (only DJI campaigns have any).
    fn busy_docks(&self) -> HashSet<&DeviceId> {
        self.devices
            .iter()
            .zip(&self.docks)
            .filter(|(rec, _)| rec.status.in_flight())
            .filter_map(|(_, dock)| dock.as_ref())
            .collect()
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
    pub fn devices(&self) -> &[DeviceRecord] {
        &self.devices
    }

    /// The record of a device (any module given is replaced by the campaign's).
    pub fn device(&self, device: &DeviceId) -> Option<&DeviceRecord> {
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
            devices: self.devices.iter().map(DeviceSnapshot::from).collect(),
        }
    }

    /// The protocol notice for an order this campaign emitted.
    pub fn build_notice(&self, order: &UpgradeOrder, route: &NoticeRoute) -> UpgradeNotice {
        let dialect = match (order.device.dialect(), &order.task, &order.dji) {
            (Dialect::Dji, _, Some(dji)) => DialectOptions::Dji {
                gateway: route
                    .gateway
                    .clone()
                    .unwrap_or_else(|| order.device.device()),
                tid: dji.tid.clone(),
                bid: dji.bid.clone(),
                timestamp_ms: route.timestamp_ms,
                upgrade_type: self.spec.settings.dji_upgrade_type,
            },
            (Dialect::FogCloud, TaskRef::TaskId(task_id), _) => DialectOptions::FogCloud {
                id: route.msg_id,
                task_id: task_id.clone(),
                gateway: route.gateway.clone(),
            },
            _ => DialectOptions::Aliyun {
                id: route.msg_id,
                sign_method: self.spec.settings.sign_method,
            },
        };
        let mut offer = self.spec.offer.clone();
        if let Some(url) = &route.download_url {
            offer.url.clone_from(url);
        }
        UpgradeNotice {
            device: order.device.clone(),
            offer,
            dialect,
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
                Event::ServiceReply(r) => self.on_service_reply(&r, &mut out),
                Event::FirmwareGet(g) => reply_to = self.on_firmware_get(g),
                // Topology, compatibility and other DJI events are the engine's business.
                _ => {}
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

    // ---- routing ----------------------------------------------------------------------------

    fn index_of(&self, device: &DeviceId) -> Option<usize> {
        let key = device
            .device()
            .with_module(self.spec.module.as_deref())
            .ok()?;
        self.by_device.get(&key).copied()
    }

    fn on_version(&mut self, report: &VersionReport, out: &mut Vec<Action>) {
        // The module must match exactly: another module's version says nothing about ours.
        let Some(&idx) = self.by_device.get(&report.device) else {
            return;
        };
        // Alibaba and FogCloud devices report their version when they (re)connect: one still
        // waiting for its notice may not have subscribed yet.
        if self
            .devices
            .get(idx)
            .is_some_and(|rec| rec.status == DeviceStatus::Pending)
        {
            self.start_settle(idx, self.now);
        }
        self.update(idx, out, |rec, ctx| {
            device::on_version(rec, &report.version, ctx)
        });
        self.after_device_outcome(idx, out);
        // After the update: a device that just succeeded needs no re-sent notice.
        self.set_online(idx, true, out);
    }

    fn on_progress(&mut self, report: &ProgressReport, out: &mut Vec<Action>) {
        let Some(idx) = self.match_progress(report, out) else {
            return;
        };
        self.update(idx, out, |rec, ctx| device::on_progress(rec, report, ctx));
        self.after_device_outcome(idx, out);
        // DJI progress comes from the dock, which says nothing about the drone's link.
        if report.device.dialect() != Dialect::Dji {
            self.set_online(idx, true, out);
        }
    }

    /// Finds the device a progress report is about, or logs why it is ignored.
    fn match_progress(&self, report: &ProgressReport, out: &mut Vec<Action>) -> Option<usize> {
        match &report.task {
            TaskRef::Bid(bid) => {
                let idx = *self.by_bid.get(bid)?;
                let rec = self.devices.get(idx)?;
                let current = matches!(&rec.task, TaskRecord::Dji { bid: b, .. } if b == bid);
                if !self.sent_by_its_dock(idx, &report.device) {
                    log(
                        out,
                        Some(&rec.device),
                        LogLevel::Warn,
                        format!(
                            "progress for bid {bid} from {} ignored: the upgrade does not run \
                             through that dock",
                            report.device
                        ),
                    );
                    None
                } else if current {
                    Some(idx)
                } else {
                    log(
                        out,
                        Some(&rec.device),
                        LogLevel::Info,
                        format!("progress for bid {bid} of an earlier attempt ignored"),
                    );
                    None
                }
            }
            TaskRef::TaskId(task_id) => {
                let target = self.index_of(&report.device);
                let owner = self.by_task_id.get(task_id).copied();
                let current = target.filter(|&idx| {
                    self.devices.get(idx).is_some_and(
                        |rec| matches!(&rec.task, TaskRecord::TaskId(t) if t == task_id),
                    )
                });
                if current.is_none() && (target.is_some() || owner.is_some()) {
                    let why = match owner {
                        Some(o) if Some(o) != target => "belongs to another device",
                        Some(_) => "belongs to an earlier attempt",
                        None => "was not issued by this campaign",
                    };
                    log(
                        out,
                        Some(&report.device),
                        LogLevel::Warn,
                        format!("progress with task_id {task_id:?} ignored: it {why}"),
                    );
                }
                current
            }
            TaskRef::None => self.by_device.get(&report.device).copied(),
        }
    }

    fn on_service_reply(&mut self, reply: &ServiceReply, out: &mut Vec<Action>) {
        let Some(&idx) = self.by_bid.get(&reply.bid) else {
            return;
        };
        let current = self.devices.get(idx).is_some_and(
            |rec| matches!(&rec.task, TaskRecord::Dji { bid, .. } if *bid == reply.bid),
        );
        if !current || !self.sent_by_its_dock(idx, &reply.gateway) {
            return;
        }
        self.update(idx, out, |rec, _| device::on_service_reply(rec, reply));
        self.after_device_outcome(idx, out);
    }

    /// Whether a DJI report came from the dock the device upgrades through. Bids travel in
    /// clear on the broker, so another dock (or any client) could repeat one; only the dock the
    /// `ota_create` went to speaks for the upgrade. Until the topology is known (never set),
    /// any sender is accepted.
    fn sent_by_its_dock(&self, idx: usize, sender: &DeviceId) -> bool {
        match self.docks.get(idx) {
            Some(Some(dock)) if self.docks_known => dock.device() == sender.device(),
            _ => true,
        }
    }

    /// Notes the request; the reply is built after scheduling, which may notice the device now.
    fn on_firmware_get(&mut self, request: FirmwareGet) -> Option<(FirmwareGet, usize)> {
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
    fn reply_firmware_get(
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
        if pending.is_none() && !crate::protocol::has_nothing_pending_reply(device.dialect()) {
            // FogCloud defines no empty reply: silence is the answer (notes.md).
            let message = format!(
                "firmware request answered with nothing: the device is {}{}",
                rec.status,
                if rec.status == DeviceStatus::Pending {
                    " and its turn has not come"
                } else {
                    ""
                }
            );
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
        let dock_busy = self
            .docks
            .get(idx)
            .cloned()
            .flatten()
            .is_some_and(|d| self.busy_docks().contains(&d));
        self.state == CampaignState::Running
            && self.broker_lost_at.is_none()
            && self.queue.contains(&idx)
            && self.counts.in_flight() < max
            && rec.retry_at.is_none_or(|t| t <= self.now)
            && device::skip_reason(rec, &self.spec.offer.version, &self.spec.policy).is_none()
            && (self.spec.policy.only_from_versions.is_empty() || rec.from_version.is_some())
            && !dock_busy
    }

    /// The devices whose notice may not have arrived after a resume or a broker outage: online
    /// and `noticed`. DJI devices are left out: `ota_create` has its own reply-and-resend exchange.
    fn noticed_online(&self) -> impl Iterator<Item = usize> + '_ {
        self.devices.iter().enumerate().filter_map(|(idx, rec)| {
            (self.online.get(idx).copied().unwrap_or(false)
                && rec.status == DeviceStatus::Noticed
                && rec.device.dialect() != Dialect::Dji)
                .then_some(idx)
        })
    }

    /// After a resume or a broker outage, with settling on: every [`Self::noticed_online`]
    /// device waits `settle_ms` for an answer before its notice goes again. What devices
    /// reported while the console could not listen is still arriving from its persistent
    /// session, and a device that answers in that time (or already succeeded) must not get a
    /// second notice.
    fn await_noticed_answers(&mut self, out: &mut Vec<Action>) {
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
                format!(
                    "{} notice(s) that may not have arrived: re-sent unless answered within {} ms",
                    waiting.len(),
                    self.spec.policy.settle_ms
                ),
            );
        }
    }

    /// Re-sends the notice in flight to every [`Self::noticed_online`] device at once (settling
    /// off): a notice that never arrived would otherwise cost a timeout.
    fn resend_to_noticed(&self, out: &mut Vec<Action>) {
        let mut count = 0;
        for idx in self.noticed_online() {
            if let Some(rec) = self.devices.get(idx) {
                out.push(Action::SendUpgrade(order_for(rec, true)));
                count += 1;
            }
        }
        if count > 0 {
            log(
                out,
                None,
                LogLevel::Info,
                format!("{count} notice(s) that may not have arrived re-sent"),
            );
        }
    }

    fn set_online(&mut self, idx: usize, online: bool, out: &mut Vec<Action>) {
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
        // (DJI has its own reply-and-resend exchange).
        if came_back && rec.status == DeviceStatus::Noticed && rec.device.dialect() != Dialect::Dji
        {
            log(
                out,
                Some(&rec.device),
                LogLevel::Info,
                "device is back online: notice re-sent".into(),
            );
            out.push(Action::SendUpgrade(order_for(rec, true)));
        }
    }

    fn on_publish_failed(
        &mut self,
        device: &DeviceId,
        attempt: u32,
        error: &str,
        out: &mut Vec<Action>,
    ) {
        let Some(idx) = self.index_of(device) else {
            return;
        };
        let Some(rec) = self.devices.get(idx) else {
            return;
        };
        if rec.status != DeviceStatus::Noticed || rec.attempts != attempt {
            return;
        }
        if rec.device.dialect() == Dialect::Dji {
            let message =
                format!("publishing ota_create failed ({error}); the reply wait will re-send it");
            log(out, Some(&rec.device), LogLevel::Warn, message);
            return;
        }
        self.update(idx, out, |rec, ctx| device::unsend(rec, error, ctx));
    }

    // ---- device updates ---------------------------------------------------------------------

    /// Runs one device step and emits what it changed: `Persist` (status change or row update),
    /// then its logs, then a re-send if asked.
    fn update<F>(&mut self, idx: usize, out: &mut Vec<Action>, f: F) -> Step
    where
        F: FnOnce(&mut DeviceRecord, &DeviceCtx<'_>) -> Step,
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
                let detail = step
                    .detail
                    .clone()
                    .unwrap_or_else(|| format!("{} -> {}", before.status, after.status));
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
            out.push(Action::Persist(Transition {
                campaign: self.id,
                at: self.now,
                change,
            }));
            self.track(idx, Some(&before));
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
    fn track(&mut self, idx: usize, before: Option<&DeviceRecord>) {
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
    fn refresh_queue(&mut self, idx: usize) {
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

    /// A failed or timed-out device gets its retry scheduled while the campaign may still
    /// notice devices.
    fn after_device_outcome(&mut self, idx: usize, out: &mut Vec<Action>) {
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

    fn fire_timers(&mut self, ids: &mut dyn IdSource, out: &mut Vec<Action>) {
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

    // ---- scheduling -------------------------------------------------------------------------

    /// After every input: abort check, wave gate, notices, completion.
    fn settle(&mut self, ids: &mut dyn IdSource, out: &mut Vec<Action>) {
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
        let candidates: Vec<usize> = self.queue.iter().copied().collect();
        let has_docks = self.docks.iter().any(Option::is_some);
        let mut busy: HashSet<DeviceId> = if has_docks {
            self.busy_docks().into_iter().cloned().collect()
        } else {
            HashSet::new()
        };
        for idx in candidates {
            if self.counts.in_flight() >= max {
                break;
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
            let dock = self.docks.get(idx).cloned().flatten();
            if dock.as_ref().is_some_and(|d| busy.contains(d)) {
                continue;
            }
            if !self.bucket.try_take(self.now) {
                self.rate_blocked = true;
                break;
            }
            self.send_notice(idx, ids, out);
            busy.extend(dock);
        }
        skipped
    }

    /// The device came online less than `settle_ms` ago.
    fn settling(&self, idx: usize) -> bool {
        self.settle_until
            .get(idx)
            .copied()
            .flatten()
            .is_some_and(|t| t > self.now)
    }

    fn send_notice(&mut self, idx: usize, ids: &mut dyn IdSource, out: &mut Vec<Action>) {
        let Some(rec) = self.devices.get(idx) else {
            return;
        };
        let task = match rec.device.dialect() {
            Dialect::Aliyun => TaskRecord::None,
            Dialect::FogCloud => {
                let id = self.next_task_id.to_string();
                self.next_task_id = self.next_task_id.saturating_add(1);
                self.by_task_id.insert(id.clone(), idx);
                TaskRecord::TaskId(id)
            }
            Dialect::Dji => {
                let bid = ids.uuid();
                let tid = ids.uuid();
                self.by_bid.insert(bid.clone(), idx);
                TaskRecord::Dji { bid, tid }
            }
        };
        self.update(idx, out, |rec, ctx| device::notice(rec, task, ctx));
        if let Some(rec) = self.devices.get(idx) {
            out.push(Action::SendUpgrade(order_for(rec, false)));
        }
    }

    fn tally(&self, wave: u32) -> WaveTally {
        self.wave_tallies
            .get(wave as usize)
            .copied()
            .unwrap_or_default()
    }

    fn current_wave_blocked(&self) -> bool {
        let Some(w) = self.current_wave else {
            return false;
        };
        let has_next = (w as usize) + 1 < self.wave_members.len();
        has_next
            && self
                .tally(w)
                .blocked(self.spec.policy.success_threshold_percent)
    }

    fn open_ready_waves(&mut self, out: &mut Vec<Action>) {
        if self.state != CampaignState::Running {
            return;
        }
        let threshold = self.spec.policy.success_threshold_percent;
        while let Some(w) = self.current_wave {
            if (w as usize) + 1 >= self.wave_members.len() {
                break;
            }
            let tally = self.tally(w);
            if tally.gate_met(threshold) {
                let detail = format!(
                    "wave {} reached {}/{} succeeded (threshold {threshold} %)",
                    w + 1,
                    tally.succeeded,
                    tally.eligible()
                );
                self.open_wave(w + 1, detail, out);
            } else {
                if tally.blocked(threshold) && self.blocked_wave_logged != Some(w) {
                    self.blocked_wave_logged = Some(w);
                    let message = format!(
                        "wave {} finished with {}/{} succeeded, below the {threshold} % threshold: \
                         the next wave waits for the operator (advance wave)",
                        w + 1,
                        tally.succeeded,
                        tally.eligible()
                    );
                    log(out, None, LogLevel::Warn, message);
                }
                break;
            }
        }
    }

    fn open_wave(&mut self, wave: u32, why: String, out: &mut Vec<Action>) {
        self.current_wave = Some(wave);
        let total = self.wave_members.len();
        self.persist_campaign(
            self.state,
            format!("wave {} of {total} opened: {why}", wave + 1),
            out,
        );
        log(
            out,
            None,
            LogLevel::Info,
            format!("wave {} of {total} opened: {why}", wave + 1),
        );
        let members = self
            .wave_members
            .get(wave as usize)
            .cloned()
            .unwrap_or_default();
        for idx in members {
            self.refresh_queue(idx);
            let reason = self
                .devices
                .get(idx)
                .filter(|rec| rec.status == DeviceStatus::Pending)
                .and_then(|rec| {
                    device::skip_reason(rec, &self.spec.offer.version, &self.spec.policy)
                });
            if let Some(reason) = reason {
                self.update(idx, out, |rec, _| device::skip(rec, reason));
            }
        }
    }

    fn check_abort(&mut self, out: &mut Vec<Action>) {
        if !matches!(self.state, CampaignState::Running | CampaignState::Paused) {
            return;
        }
        let Some(abort) = self.spec.policy.abort else {
            return;
        };
        let failures = self.counts.failures();
        let judged = failures + self.counts.succeeded;
        let minimum = usize::try_from(abort.min_finished)
            .unwrap_or(usize::MAX)
            .max(1);
        if judged >= minimum && failures * 100 > usize::from(abort.failure_percent) * judged {
            let reason = format!(
                "campaign aborted: {failures} of {judged} finished devices failed (more than {} %)",
                abort.failure_percent
            );
            self.finish(CampaignState::Aborted, reason, out);
        }
    }

    fn check_complete(&mut self, out: &mut Vec<Action>) {
        if !matches!(self.state, CampaignState::Running | CampaignState::Paused) {
            return;
        }
        if self.counts.pending == 0 && self.counts.in_flight() == 0 {
            let detail = format!(
                "every device finished: {} succeeded, {} failed, {} skipped",
                self.counts.succeeded,
                self.counts.failures(),
                self.counts.skipped
            );
            self.set_state(CampaignState::Completed, detail, out);
        }
    }

    // ---- campaign commands ------------------------------------------------------------------

    fn start(&mut self, out: &mut Vec<Action>) {
        if self.state != CampaignState::Draft {
            refuse(out, "start", self.state);
            return;
        }
        self.started_at = Some(self.now);
        for idx in 0..self.devices.len() {
            let reason = self.devices.get(idx).and_then(|rec| {
                device::skip_reason(rec, &self.spec.offer.version, &self.spec.policy)
            });
            if let Some(reason) = reason {
                self.update(idx, out, |rec, _| device::skip(rec, reason));
            }
        }
        let mut eligible: Vec<usize> = (0..self.devices.len())
            .filter(|&i| {
                self.devices
                    .get(i)
                    .is_some_and(|r| r.status == DeviceStatus::Pending)
            })
            .collect();
        // The canary and the early waves take the devices heard most recently: a device not
        // heard since the console started may be gone, and one that times out in the canary
        // holds every later wave behind the gate. Ties (and the never-heard, last) keep the
        // operator's order.
        eligible.sort_by_key(|&i| {
            let heard = self.heard_at.get(i).copied().flatten();
            (std::cmp::Reverse(heard), i)
        });
        let sizes = waves::plan_sizes(eligible.len(), &self.spec.policy);
        self.wave_members = Vec::with_capacity(sizes.len());
        self.wave_tallies = vec![WaveTally::default(); sizes.len()];
        let mut rest = eligible.as_slice();
        for size in &sizes {
            let (members, tail) = rest.split_at((*size).min(rest.len()));
            self.wave_members.push(members.to_vec());
            rest = tail;
        }
        self.current_wave = (!sizes.is_empty()).then_some(0);
        let sizes_text = sizes
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        self.set_state(
            CampaignState::Running,
            format!(
                "started: {} devices to upgrade in waves of [{sizes_text}]",
                eligible.len()
            ),
            out,
        );
        for (wave, members) in self.wave_members.clone().into_iter().enumerate() {
            let wave = u32::try_from(wave).unwrap_or(u32::MAX);
            for idx in members {
                self.update(idx, out, |rec, _| {
                    rec.wave = Some(wave);
                    Step::default()
                });
            }
        }
    }

    // ---- the console's broker link ----------------------------------------------------------

    fn broker_lost(&mut self, out: &mut Vec<Action>) {
        if self.broker_lost_at.is_some()
            || (self.state.is_finished() && self.counts.in_flight() == 0)
        {
            return;
        }
        self.broker_lost_at = Some(self.now);
        log(
            out,
            None,
            LogLevel::Warn,
            "the broker link is down: timeouts and new notices wait until it is back".into(),
        );
    }

    /// Gives every device in flight the outage back, so that only its own silence times it out.
    fn broker_back(&mut self, out: &mut Vec<Action>) {
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
            format!(
                "the broker link is back after {:.1} s: {} device(s) in flight get that time back",
                outage_ms as f64 / 1000.0,
                in_flight.len()
            ),
        );
    }

    /// Pause and resume: `from` → `to`, or a refusal.
    fn command_state(
        &mut self,
        from: CampaignState,
        to: CampaignState,
        detail: &str,
        out: &mut Vec<Action>,
    ) {
        if self.state == from {
            self.set_state(to, detail.to_owned(), out);
        } else {
            refuse(
                out,
                if to == CampaignState::Paused {
                    "pause"
                } else {
                    "resume"
                },
                self.state,
            );
        }
    }

    fn cancel(&mut self, out: &mut Vec<Action>) {
        if self.state.is_finished() {
            refuse(out, "cancel", self.state);
            return;
        }
        self.finish(
            CampaignState::Canceled,
            "campaign canceled by the operator".into(),
            out,
        );
    }

    /// Aborted or canceled: no notice ever again; pending devices end now.
    fn finish(&mut self, to: CampaignState, reason: String, out: &mut Vec<Action>) {
        self.set_state(to, reason.clone(), out);
        for idx in 0..self.devices.len() {
            if self
                .devices
                .get(idx)
                .is_some_and(|r| r.status == DeviceStatus::Pending)
            {
                self.update(idx, out, |rec, _| device::stop_pending(rec, &reason));
            }
        }
    }

    fn advance_wave_command(&mut self, out: &mut Vec<Action>) {
        if !matches!(self.state, CampaignState::Running | CampaignState::Paused) {
            refuse(out, "advance the wave", self.state);
            return;
        }
        match self.current_wave {
            Some(w) if (w as usize) + 1 < self.wave_members.len() => {
                self.open_wave(w + 1, "advanced by the operator".into(), out);
            }
            _ => log(
                out,
                None,
                LogLevel::Warn,
                "advance wave: every wave is already open".into(),
            ),
        }
    }

    fn retry_failed(&mut self, out: &mut Vec<Action>) {
        if !matches!(
            self.state,
            CampaignState::Running | CampaignState::Paused | CampaignState::Completed
        ) {
            refuse(out, "retry failed devices", self.state);
            return;
        }
        let failed: Vec<usize> = (0..self.devices.len())
            .filter(|&i| {
                self.devices.get(i).is_some_and(|r| {
                    matches!(r.status, DeviceStatus::Failed | DeviceStatus::TimedOut)
                })
            })
            .collect();
        if failed.is_empty() {
            log(
                out,
                None,
                LogLevel::Info,
                "retry failed: no failed or timed-out device".into(),
            );
            return;
        }
        if self.state == CampaignState::Completed {
            self.set_state(
                CampaignState::Running,
                format!("{} failed devices re-queued", failed.len()),
                out,
            );
            self.finished_at = None;
        }
        for &idx in &failed {
            self.update(idx, out, |rec, _| device::requeue(rec).unwrap_or_default());
        }
        log(
            out,
            None,
            LogLevel::Info,
            format!("{} failed or timed-out devices re-queued", failed.len()),
        );
    }

    fn set_state(&mut self, to: CampaignState, detail: String, out: &mut Vec<Action>) {
        let from = self.state;
        self.state = to;
        if to.is_finished() {
            self.finished_at = Some(self.now);
            self.queue.clear();
        }
        self.persist_campaign(from, detail, out);
        out.push(Action::CampaignStateChanged { from, to });
    }

    fn persist_campaign(&mut self, from: CampaignState, detail: String, out: &mut Vec<Action>) {
        out.push(Action::Persist(Transition {
            campaign: self.id,
            at: self.now,
            change: Change::Campaign {
                from,
                to: self.state,
                current_wave: self.current_wave,
                detail,
            },
        }));
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
        DeviceId::dji("probe")?.with_module(Some(module))?;
    }
    Ok(())
}

fn order_for(rec: &DeviceRecord, resend: bool) -> UpgradeOrder {
    UpgradeOrder {
        device: rec.device.clone(),
        attempt: rec.attempts,
        task: rec.task.task_ref(),
        dji: match &rec.task {
            TaskRecord::Dji { bid, tid } => Some(DjiExchange {
                bid: bid.clone(),
                tid: tid.clone(),
            }),
            _ => None,
        },
        resend,
    }
}

fn timers_of(rec: &DeviceRecord) -> impl Iterator<Item = Timestamp> {
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

fn log(out: &mut Vec<Action>, device: Option<&DeviceId>, level: LogLevel, message: String) {
    out.push(Action::Log {
        device: device.cloned(),
        level,
        message,
    });
}

fn refuse(out: &mut Vec<Action>, what: &str, state: CampaignState) {
    log(
        out,
        None,
        LogLevel::Warn,
        format!("cannot {what}: the campaign is {state}"),
    );
}
