//! The engine task: one loop that owns all mutable state and reacts to commands, device
//! messages, timers and link changes, one at a time. Nothing here blocks: SQLite writes are
//! short (one transaction per burst of transitions) and hashing runs on a blocking thread.
//!
//! [`Runner`] is the only owner of the engine's components (see `engine/mod.rs`); its fields
//! are private to this module and its children, which are `impl Runner` blocks that orchestrate
//! one kind of turn: `inbound.rs` (a device message), `on_command.rs` (an operator command),
//! `broker_guard.rs` (a refusal of the embedded broker), `driving.rs` (feeding the campaigns and
//! flushing their outbox), `restore.rs` (start-up from the database). Each child names
//! `super::Runner`; this file imports nothing from them. A component gets what it changes as
//! arguments, never the runner.

mod broker_guard;
mod driving;
mod inbound;
mod locking;
mod on_command;
mod restore;

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use super::alerts::Alerts;
use super::campaign_lock::CampaignLock;
use super::campaigns::Campaigns;
use super::clock::Clock;
use super::command::Command;
use super::device_rows::RowCache;
use super::fleet_state::FleetState;
use super::io::Io;
use super::library::{ImportEvent, Library};
use super::publisher::Publisher;
use super::snapshot::AlertLevel;
use super::traffic::TrafficMeter;
use crate::device_id::DeviceId;
use crate::i18n::tr;
use crate::protocol::{Outbound, Services};
use crate::rollout::Input;
use crate::store::Store;
use crate::transport::mqtt::{Inbound, LinkError, LinkState, SessionNews};

/// How often the snapshot is republished when something changed, and housekeeping runs.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);
/// Device messages handled per wake-up before commands and timers get a turn.
const INBOUND_BATCH: usize = 2_000;
/// How often the inventory is written and a timeline point taken.
const SLOW_HOUSEKEEPING: Duration = Duration::from_secs(1);

pub(super) struct Runner {
    clock: Clock,
    store: Store,
    alerts: Alerts,
    publisher: Publisher,
    traffic: TrafficMeter,
    library: Library,
    io: Io,
    fleet: FleetState,
    campaigns: Campaigns,
    lock: CampaignLock,
    /// The server-side state of the dialects that keep one (`protocol::Services`).
    services: Services,
    /// The link to the broker has been up once. Until then a failing link is not logged:
    /// whoever started the engine waits for it ([`super::EngineHandle::wait_connected`]) and
    /// says why it failed, once (the CLI's `error:` line; the window shows the alert).
    link_was_up: bool,
    /// The snapshot's device table, patched with what changed at each publish.
    rows: RowCache,
}

impl Runner {
    /// The engine over what start-up opened; nothing is known of the fleet or campaigns yet
    /// (see [`Runner::restore`]).
    pub(super) fn new(store: Store, io: Io, library: Library, publisher: Publisher) -> Runner {
        let clock = Clock::new();
        let mut runner = Runner {
            // Message ids start from the clock so that ids stay increasing across restarts.
            campaigns: Campaigns::new(clock.now_ms()),
            lock: CampaignLock::new(io.client_id()),
            clock,
            store,
            alerts: Alerts::default(),
            publisher,
            traffic: TrafficMeter::default(),
            library,
            io,
            fleet: FleetState::default(),
            services: Services::for_registered(),
            link_was_up: false,
            rows: RowCache::default(),
        };
        if let Some(warning) = runner.io.session_warning() {
            runner.alert(AlertLevel::Warning, warning);
        }
        runner
    }

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
        // Queued before the link's DISCONNECT, so the broker handles it first (a clean
        // disconnect sends no Will).
        self.release_locks();
        self.io.shutdown().await;
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
        self.campaigns
            .next_deadline()
            .map(|at| self.clock.instant_of(at))
    }

    fn on_link_state(&mut self, state: &LinkState) {
        match state {
            LinkState::Failed { reason } => self.link_alert(
                AlertLevel::Error,
                tr!("engine.alert.broker_failed", why = reason),
            ),
            LinkState::Reconnecting {
                reason, attempt: 1, ..
            } => self.link_alert(
                AlertLevel::Warning,
                tr!("engine.alert.broker_lost", why = reason),
            ),
            LinkState::Connected => {
                self.link_was_up = true;
                tracing::info!("connected to the MQTT broker");
                self.lock_reconnected();
            }
            _ => {}
        }
        let input = if *state == LinkState::Connected {
            Input::BrokerBack
        } else {
            Input::BrokerLost
        };
        self.drive_all(&input);
        self.publisher.mark();
    }

    /// Tells the operator when the broker did not keep the console's session: reports sent
    /// meanwhile are gone, and the devices they came from fall back to the timeout path (timed
    /// out, then noticed again; devices still `noticed` get their notice re-sent on BrokerBack).
    fn on_session_news(&mut self, news: SessionNews) {
        let in_flight = self.campaigns.devices_in_flight();
        if let Some(warning) = self.io.session_news(news, in_flight) {
            self.alert(AlertLevel::Warning, warning);
        }
    }

    /// A resumed campaign with devices in flight, on a run whose session the broker had not
    /// kept: whatever its devices said while the console was away is gone.
    fn tell_session_absent(&mut self) {
        let in_flight = self.campaigns.devices_in_flight();
        if let Some(warning) = self.io.session_absent_warning(in_flight) {
            self.alert(AlertLevel::Warning, warning);
        }
    }

    /// Publishes one message and records it in the inspector.
    fn publish(&mut self, out: Outbound, about: Option<DeviceId>) -> Result<(), LinkError> {
        let now_ms = self.clock.now_ms();
        if let Some(device) = &about {
            self.fleet
                .note_message(device, format!("out {}", out.topic));
        }
        let result = self.io.publish(out, about, now_ms);
        match result {
            Ok(()) => self.traffic.published(),
            Err(_) => self.traffic.not_sent(),
        }
        self.publisher.mark();
        result
    }

    /// Tells the operator (and the log).
    fn alert(&mut self, level: AlertLevel, text: String) {
        self.alerts.push(level, text, self.clock.now_ms());
    }

    /// An alert about the link: logged once the link has been up, only kept before (see
    /// `link_was_up`).
    fn link_alert(&mut self, level: AlertLevel, text: String) {
        if self.link_was_up {
            self.alert(level, text);
        } else {
            self.alerts.keep(level, text, self.clock.now_ms());
        }
    }

    fn slow_housekeeping(&mut self) {
        self.flush_inventory();
        self.lock_housekeeping();
        if self.campaigns.record_timelines(self.clock.now_ms()) {
            self.publisher.mark();
        }
        if self
            .traffic
            .housekeeping(Instant::now(), self.io.served_total())
        {
            self.publisher.mark();
        }
    }

    /// Writes the devices discovered or changed since the last flush.
    fn flush_inventory(&mut self) {
        let devices = self.fleet.take_dirty();
        if devices.is_empty() {
            return;
        }
        if let Err(e) = self.store.upsert_devices(&devices) {
            self.alert(
                AlertLevel::Error,
                tr!("engine.alert.inventory_not_saved", why = e),
            );
        }
    }

    /// Whether something the snapshot shows changed since it was published.
    fn is_stale(&mut self) -> bool {
        let alerted = self.alerts.take_changed();
        alerted || self.publisher.is_dirty()
    }

    fn publish_snapshot(&mut self) {
        self.alerts.take_changed();
        let (devices, rows_changed) = self.rows.refresh(&mut self.fleet, &mut self.campaigns);
        let snapshot = super::view::build(&super::view::Parts {
            devices,
            campaigns: &self.campaigns,
            io: &self.io,
            traffic: &self.traffic,
            library: &self.library,
            alerts: &self.alerts,
            now_ms: self.clock.now().as_millis(),
        });
        self.publisher.publish(snapshot, rows_changed);
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
