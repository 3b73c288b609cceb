//! The engine task: one loop that owns all mutable state and reacts to commands, device
//! messages, timers and link changes, one at a time. Nothing here blocks: SQLite writes are
//! short (one transaction per burst of transitions) and hashing runs on a blocking thread.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use super::alerts::Alerts;
use super::clock::Clock;
use super::command::Command;
use super::fleet_state::FleetState;
use super::io::Io;
use super::library::{ImportEvent, Library};
use super::live::LiveCampaign;
use super::outbox::Outbox;
use super::publisher::Publisher;
use super::snapshot::{AlertLevel, CampaignView};
use super::traffic::TrafficMeter;
use crate::device_id::DeviceId;
use crate::protocol::Outbound;
use crate::rollout::{DeviceStatus, Input, RandomIds};
use crate::store::Store;
use crate::transport::mqtt::{Inbound, LinkError, LinkState, SessionNews};

/// How often the snapshot is republished when something changed, and housekeeping runs.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);
/// Device messages handled per wake-up before commands and timers get a turn.
const INBOUND_BATCH: usize = 2_000;
/// How often the inventory is written and a timeline point taken.
const SLOW_HOUSEKEEPING: Duration = Duration::from_secs(1);

pub(super) struct Runner {
    pub(super) clock: Clock,
    pub(super) store: Store,
    pub(super) alerts: Alerts,
    pub(super) publisher: Publisher,
    pub(super) traffic: TrafficMeter,
    pub(super) library: Library,
    pub(super) io: Io,
    pub(super) fleet: FleetState,
    pub(super) live: Vec<LiveCampaign>,
    pub(super) history: Vec<CampaignView>,
    pub(super) ids: RandomIds,
    pub(super) next_msg_id: i64,
    pub(super) outbox: Outbox,
}

impl Runner {
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut inbound: mpsc::Receiver<Inbound>,
        mut import_rx: mpsc::Receiver<ImportEvent>,
    ) {
        let mut link_state = self.io.link_states();
        let mut session = self.io.session_changes();
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
                    if self.is_stale() {
                        self.publish_snapshot();
                    }
                }
                _ = slow.tick() => self.slow_housekeeping(),
                event = self.io.next_broker_event() => {
                    self.on_broker_event(event);
                }
            }
            self.flush_outbox();
        }
        self.flush_inventory();
        self.io.shutdown();
        self.publish_snapshot();
    }

    fn on_import_event(&mut self, event: ImportEvent) {
        let (now, now_ms) = (self.clock.now(), self.clock.now_ms());
        if self
            .library
            .on_event(event, &mut self.store, now, &mut self.alerts, now_ms)
        {
            self.publisher.mark();
        }
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
        self.publisher.mark();
    }

    /// Tells the operator when the broker did not keep the console's session: reports sent
    /// meanwhile are gone, and the devices they came from fall back to the timeout path (timed
    /// out, then noticed again; devices still `noticed` get their notice re-sent on BrokerBack).
    fn on_session_news(&mut self, news: SessionNews) {
        let in_flight = self.devices_in_flight();
        if let Some(warning) = self.io.session_news(news, in_flight) {
            self.alert(AlertLevel::Warning, warning);
        }
    }

    /// A resumed campaign with devices in flight, on a run whose session the broker had not
    /// kept: whatever its devices said while the console was away is gone.
    pub(super) fn tell_session_absent(&mut self) {
        let in_flight = self.devices_in_flight();
        if let Some(warning) = self.io.session_absent_warning(in_flight) {
            self.alert(AlertLevel::Warning, warning);
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
            .filter_map(|rec| self.fleet.version_heard(&rec.device))
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
        if let Some(device) = &about {
            self.fleet
                .note_message(device, format!("out {}", out.topic));
        }
        let result = self.io.publish(out, about, now_ms);
        if result.is_ok() {
            self.traffic.published();
        }
        self.publisher.mark();
        result
    }

    /// Tells the operator (and the log).
    pub(super) fn alert(&mut self, level: AlertLevel, text: String) {
        self.alerts.push(level, text, self.clock.now_ms());
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
                self.publisher.mark();
            }
        }
        if self
            .traffic
            .housekeeping(Instant::now(), self.io.served_total())
        {
            self.publisher.mark();
        }
    }

    /// Writes the devices discovered or changed since the last flush.
    pub(super) fn flush_inventory(&mut self) {
        let devices = self.fleet.take_dirty();
        if devices.is_empty() {
            return;
        }
        if let Err(e) = self.store.upsert_devices(&devices) {
            self.alert(
                AlertLevel::Error,
                format!("could not save the device inventory: {e}"),
            );
        }
    }

    /// Whether something the snapshot shows changed since it was published.
    fn is_stale(&mut self) -> bool {
        let alerted = self.alerts.take_changed();
        alerted || self.publisher.is_dirty()
    }

    pub(super) fn publish_snapshot(&mut self) {
        self.alerts.take_changed();
        let snapshot = super::view::build(&super::view::Parts {
            fleet: &self.fleet,
            live: &self.live,
            history: &self.history,
            io: &self.io,
            traffic: &self.traffic,
            library: &self.library,
            alerts: &self.alerts,
        });
        self.publisher.publish(snapshot);
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
