//! The engine task: one loop that owns all mutable state and reacts to commands, device
//! messages, timers and link changes, one at a time. Nothing here blocks: SQLite writes are
//! short (one transaction per burst of transitions) and hashing runs on a blocking thread.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

use super::clock::Clock;
use super::command::Command;
use super::handle::Waker;
use super::import::{ImportEvent, ImportJob};
use super::live::LiveCampaign;
use super::outbox::Outbox;
use super::snapshot::{Alert, AlertLevel, CampaignView, Snapshot, Traffic};
use crate::device_id::DeviceId;
use crate::firmware::{FirmwareStore, StoredPackage};
use crate::fleet::Fleet;
use crate::fleet::inspector::{Direction, Inspector};
use crate::protocol::Outbound;
use crate::rollout::{DeviceStatus, Input, RandomIds};
use crate::store::Store;
use crate::transport::broker::EmbeddedBroker;
use crate::transport::http::FirmwareServer;
use crate::transport::mqtt::{Inbound, LinkError, LinkState, MqttLink, SessionNews};

/// How often the snapshot is republished when something changed, and housekeeping runs.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);
/// Device messages handled per wake-up before commands and timers get a turn.
const INBOUND_BATCH: usize = 2_000;
/// Alerts kept for the UI.
const MAX_ALERTS: usize = 100;
/// How often the inventory is written and a timeline point taken.
const SLOW_HOUSEKEEPING: Duration = Duration::from_secs(1);

pub(super) struct Runner {
    pub(super) clock: Clock,
    pub(super) fleet: Fleet,
    pub(super) inspector: Arc<Mutex<Inspector>>,
    pub(super) store: Store,
    pub(super) packages: FirmwareStore,
    pub(super) library: Vec<StoredPackage>,
    pub(super) link: MqttLink,
    pub(super) http: Option<FirmwareServer>,
    /// The per-device download links' key (with the embedded firmware server only).
    pub(super) download_key: Option<super::downloads::KeySlot>,
    pub(super) external_url: Option<String>,
    pub(super) live: Vec<LiveCampaign>,
    pub(super) history: Vec<CampaignView>,
    pub(super) ids: RandomIds,
    pub(super) next_msg_id: i64,
    pub(super) alerts: VecDeque<Alert>,
    pub(super) traffic: Traffic,
    pub(super) rate_window: VecDeque<(Instant, u64)>,
    pub(super) import: Option<ImportJob>,
    pub(super) import_tx: mpsc::Sender<ImportEvent>,
    pub(super) snapshot_tx: watch::Sender<Arc<Snapshot>>,
    pub(super) waker: Arc<Mutex<Option<Waker>>>,
    pub(super) dirty: bool,
    pub(super) inventory_dirty: HashSet<DeviceId>,
    pub(super) last_message: HashMap<DeviceId, String>,
    pub(super) broker_label: String,
    pub(super) broker_guard: super::snapshot::BrokerGuard,
    /// Refusals the embedded broker reported (see `broker_guard.rs`).
    pub(super) broker_refusals: u64,
    pub(super) firmware_base: Option<String>,
    pub(super) revision: u64,
    pub(super) outbox: Outbox,
    /// Bytes the firmware server had sent at the last look (downloads make the snapshot dirty).
    pub(super) served_bytes: u64,
    /// Rate limit for the log of refused device messages.
    pub(super) refusals: super::inbound::RefusalLog,
    /// The last version each device reported in this run, for campaigns resumed after the
    /// report came: a persistent session delivers what devices said while the console was down
    /// as soon as it connects, before `rollout --resume` has put the campaign back to work.
    pub(super) heard_versions: HashMap<DeviceId, crate::protocol::VersionReport>,
    /// What the link last said about the MQTT session (`None` before the engine looked).
    pub(super) session_seen: Option<SessionNews>,
    /// The first ConnAck of this run found no kept session, and no campaign in flight has been
    /// told yet (a campaign resumed later, as `rollout --resume` does, is told then).
    pub(super) session_absent_untold: bool,
    /// Keeps the client id's lock: no other console on this data directory takes the session.
    pub(super) _session: super::session_id::SessionClaim,
    /// The embedded broker, when the console runs one (told the gateways the fleet learns, so
    /// a DJI dock may publish its drone's state).
    pub(super) broker: Option<EmbeddedBroker>,
    /// What its gate refused (see `broker_guard.rs`); `None` with an external broker.
    pub(super) broker_events:
        Option<tokio::sync::broadcast::Receiver<crate::transport::broker::BrokerEvent>>,
}

/// Devices whose last version report [`Runner`] keeps for resumed campaigns (the registry's
/// own limit is lower; this only bounds the map if that changes).
const MAX_HEARD_VERSIONS: usize = crate::fleet::MAX_DEVICES;

impl Runner {
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut inbound: mpsc::Receiver<Inbound>,
        mut import_rx: mpsc::Receiver<ImportEvent>,
    ) {
        let mut link_state = self.link.state();
        let mut session = self.link.session();
        // The first ConnAck may have come before this task started.
        let news = *session.borrow_and_update();
        self.on_session_news(news);
        let mut publish = tokio::time::interval(PUBLISH_INTERVAL);
        publish.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut slow = tokio::time::interval(SLOW_HOUSEKEEPING);
        slow.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut inbound_open = true;
        self.flush_outbox();
        self.publish_snapshot();
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                command = commands.recv() => match command {
                    None | Some(Command::Shutdown) => break,
                    Some(command) => {
                        self.on_command(command);
                        self.publish_snapshot();
                    }
                },
                Some(event) = import_rx.recv() => self.on_import_event(event),
                message = inbound.recv(), if inbound_open => match message {
                    Some(message) => {
                        self.on_inbound(message);
                        for _ in 1..INBOUND_BATCH {
                            match inbound.try_recv() {
                                Ok(message) => self.on_inbound(message),
                                Err(_) => break,
                            }
                        }
                    }
                    None => inbound_open = false,
                },
                () = sleep_until_opt(deadline) => self.tick_campaigns(),
                changed = link_state.changed() => {
                    if changed.is_ok() {
                        let state = link_state.borrow_and_update().clone();
                        self.on_link_state(&state);
                    }
                }
                changed = session.changed() => {
                    if changed.is_ok() {
                        let news = *session.borrow_and_update();
                        self.on_session_news(news);
                    }
                }
                _ = publish.tick() => {
                    if self.dirty {
                        self.publish_snapshot();
                    }
                }
                _ = slow.tick() => self.slow_housekeeping(),
                event = super::broker_guard::next_event(&mut self.broker_events) => {
                    self.on_broker_event(event);
                }
            }
            self.flush_outbox();
        }
        self.flush_inventory();
        self.link.shutdown();
        self.dirty = true;
        self.publish_snapshot();
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.live
            .iter()
            .filter_map(|l| l.campaign.next_deadline())
            .min()
            .map(|at| self.clock.instant_of(at))
    }

    fn on_link_state(&mut self, state: &LinkState) {
        match state {
            LinkState::Failed { reason } => self.alert(
                AlertLevel::Error,
                format!("MQTT broker connection failed: {reason}"),
            ),
            LinkState::Reconnecting {
                reason, attempt: 1, ..
            } => self.alert(
                AlertLevel::Warning,
                format!("MQTT broker connection lost, reconnecting: {reason}"),
            ),
            LinkState::Connected => tracing::info!("connected to the MQTT broker"),
            _ => {}
        }
        let input = if *state == LinkState::Connected {
            Input::BrokerBack
        } else {
            Input::BrokerLost
        };
        for idx in 0..self.live.len() {
            self.drive(idx, input.clone());
        }
        self.dirty = true;
    }

    /// Tells the operator when the broker did not keep the console's session: reports sent
    /// meanwhile are gone, and the devices they came from fall back to the timeout path (timed
    /// out, then noticed again; devices still `noticed` get their notice re-sent on BrokerBack).
    fn on_session_news(&mut self, news: SessionNews) {
        let before = self.session_seen.replace(news).unwrap_or_default();
        if !news.persistent || news.connacks == before.connacks {
            return;
        }
        if news.lost > before.lost {
            self.warn_session_lost(
                "the MQTT broker did not keep the console's session",
                "the link was down",
            );
        } else if before.connacks == 0 && !news.present {
            self.session_absent_untold = true;
            self.tell_session_absent();
        }
    }

    /// A resumed campaign with devices in flight, on a run whose session the broker had not
    /// kept: whatever its devices said while the console was away is gone.
    pub(super) fn tell_session_absent(&mut self) {
        if !self.session_absent_untold || self.devices_in_flight() == 0 {
            return;
        }
        self.session_absent_untold = false;
        self.warn_session_lost(
            "the MQTT broker kept no session for the console",
            "the console was down",
        );
    }

    /// One wording for both ways of learning that the broker kept nothing for us.
    fn warn_session_lost(&mut self, what: &str, while_away: &str) {
        let id = self.link.client_id().to_owned();
        self.alert(
            AlertLevel::Warning,
            format!(
                "{what} (client id {id}): what devices reported while {while_away} is lost; \
                 devices in flight will time out and be noticed again"
            ),
        );
    }

    /// Remembers `report` for [`Runner::replay_versions_heard`] (bounded: a full map takes no
    /// new devices, only newer reports of those it has).
    pub(super) fn note_version_heard(&mut self, report: &crate::protocol::VersionReport) {
        if self.heard_versions.len() < MAX_HEARD_VERSIONS
            || self.heard_versions.contains_key(&report.device)
        {
            self.heard_versions
                .insert(report.device.clone(), report.clone());
        }
    }

    /// Gives a campaign just resumed the target-version reports its noticed devices sent in this
    /// run before it was live: they succeeded, and must not be noticed again. A device whose
    /// deadline passed while the console was down has timed out by now (its retry waits for the
    /// retry interval) and succeeds late.
    pub(super) fn replay_versions_heard(&mut self, idx: usize) {
        let Some(live) = self.live.get(idx) else {
            return;
        };
        let target = &live.campaign.spec().offer.version;
        let reports: Vec<crate::protocol::VersionReport> = live
            .campaign
            .devices()
            .iter()
            .filter(|rec| rec.attempts > 0 && rec.status != DeviceStatus::Succeeded)
            .filter_map(|rec| self.heard_versions.get(&rec.device))
            .filter(|report| &report.version == target)
            .cloned()
            .collect();
        for report in reports {
            self.drive(idx, Input::Event(crate::protocol::Event::Version(report)));
        }
    }

    fn devices_in_flight(&self) -> usize {
        self.live
            .iter()
            .map(|l| l.campaign.counts().in_flight())
            .sum()
    }

    /// Publishes one message and records it in the inspector.
    pub(super) fn publish(
        &mut self,
        out: Outbound,
        about: Option<DeviceId>,
    ) -> Result<(), LinkError> {
        let now_ms = self.clock.now_ms();
        let result = self.link.publish(out.clone());
        // The inspector and the log keep the words; the caller gets the typed error.
        let error = result.as_ref().err().map(ToString::to_string);
        if let Some(e) = &error {
            tracing::warn!(topic = %out.topic, error = %e, "publish failed");
        } else {
            self.traffic.published += 1;
        }
        if let Some(device) = &about {
            self.last_message
                .insert(device.device(), format!("out {}", out.topic));
        }
        self.inspect(
            now_ms,
            Direction::Out,
            &out.topic,
            &out.payload,
            about,
            error,
        );
        self.dirty = true;
        result
    }

    /// Records one message (or refused attempt) in the inspector.
    pub(super) fn inspect(
        &self,
        at_ms: i64,
        direction: Direction,
        topic: &str,
        payload: &[u8],
        about: Option<DeviceId>,
        error: Option<String>,
    ) -> u64 {
        self.inspector
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(at_ms, direction, topic, payload, about, error)
    }

    pub(super) fn alert(&mut self, level: AlertLevel, text: String) {
        match level {
            AlertLevel::Error => tracing::error!("{text}"),
            AlertLevel::Warning => tracing::warn!("{text}"),
            AlertLevel::Info => tracing::info!("{text}"),
        }
        if self.alerts.len() == MAX_ALERTS {
            self.alerts.pop_front();
        }
        self.alerts.push_back(Alert {
            at_ms: self.clock.now_ms(),
            level,
            text,
        });
        self.dirty = true;
    }

    pub(super) fn next_msg_id(&mut self) -> i64 {
        self.next_msg_id += 1;
        self.next_msg_id
    }

    fn slow_housekeeping(&mut self) {
        self.flush_inventory();
        let now_ms = self.clock.now_ms();
        for live in &mut self.live {
            if live.record_timeline(now_ms) {
                self.dirty = true;
            }
        }
        self.update_rate();
        if let Some(http) = &self.http {
            let total = http.stats().total_bytes;
            if total != self.served_bytes {
                self.served_bytes = total;
                self.dirty = true;
            }
        }
    }

    fn update_rate(&mut self) {
        let now = Instant::now();
        self.rate_window.push_back((now, self.traffic.received));
        while self.rate_window.len() > 6 {
            self.rate_window.pop_front();
        }
        if let (Some((t0, n0)), Some((t1, n1))) =
            (self.rate_window.front(), self.rate_window.back())
        {
            let secs = t1.duration_since(*t0).as_secs_f64();
            let rate = if secs > 0.0 {
                (n1 - n0) as f64 / secs
            } else {
                0.0
            };
            if (rate - self.traffic.received_per_sec).abs() > f64::EPSILON {
                self.traffic.received_per_sec = rate;
                self.dirty = true;
            }
        }
    }

    /// Writes the devices discovered or changed since the last flush.
    pub(super) fn flush_inventory(&mut self) {
        if self.inventory_dirty.is_empty() {
            return;
        }
        let devices: Vec<_> = self
            .inventory_dirty
            .drain()
            .filter_map(|id| self.fleet.get(&id).map(super::inventory::to_inventory))
            .collect();
        if let Err(e) = self.store.upsert_devices(&devices) {
            self.alert(
                AlertLevel::Error,
                format!("could not save the device inventory: {e}"),
            );
        }
    }

    pub(super) fn publish_snapshot(&mut self) {
        self.revision += 1;
        let snapshot = super::view::build(self);
        self.snapshot_tx.send_replace(Arc::new(snapshot));
        self.dirty = false;
        let waker = self
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(wake) = waker {
            wake();
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
