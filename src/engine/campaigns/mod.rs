//! The campaigns the engine drives and has driven: the live ones (each a [`Campaign`] state
//! machine with its timeline, its download links and whether it was halted), the history read
//! from the database, the group-commit outbox, and the ids that go into notices.
//!
//! Rules it keeps, all inside this type:
//! - a device+module is in at most one unfinished campaign (`campaign_for`, checked by the
//!   commands before a campaign is added);
//! - every `Persist` a campaign asks for is durable before any message it causes is published:
//!   transitions and sends wait in the outbox until the turn's one transaction commits
//!   (`turn.rs`);
//! - a halted campaign (the database refused one of its writes) is never driven again and its
//!   sends are dropped: `drive` refuses it and `commit_turn` filters its sends, the only two
//!   ways a campaign acts;
//! - message ids increase across restarts (they start from the clock).
//!
//! Children: `live.rs` and `outbox.rs` are value types this module uses; `actions.rs` and
//! `turn.rs` are `impl Campaigns` blocks (they name `super::Campaigns`, this file imports
//! nothing from them).

mod actions;
mod live;
mod outbox;
mod turn;

use super::alerts::Alerts;
use super::clock::Clock;
use super::downloads::Downloads;
use super::fleet_state::FleetState;
use super::io::Io;
use super::library::Library;
use super::snapshot::{AlertLevel, CampaignView};
use crate::device_id::DeviceId;
use crate::protocol::{Event, Services, VersionReport};
use crate::rollout::{Campaign, CampaignId, DeviceStatus, Input, RandomIds, Timestamp};
use crate::store::{Store, StoreError};

pub(super) use live::{LiveCampaign, dialects_of};
use outbox::Outbox;
pub(super) use outbox::Pending;

/// What driving a campaign reads and uses besides the campaigns themselves: the clock, the
/// fleet (gateways), the I/O edge (download links), the library (packages to serve) and the
/// alerts. Borrowed for one call.
pub(super) struct Env<'a> {
    pub(super) clock: &'a Clock,
    pub(super) fleet: &'a FleetState,
    pub(super) io: &'a mut Io,
    pub(super) library: &'a Library,
    pub(super) alerts: &'a mut Alerts,
    /// Encodes notices (through a dialect's stateful service when it has one).
    pub(super) services: &'a mut Services,
}

impl Env<'_> {
    fn alert(&mut self, level: AlertLevel, text: String) {
        self.alerts.push(level, text, self.clock.now_ms());
    }
}

pub(super) struct Campaigns {
    live: Vec<LiveCampaign>,
    /// Campaigns of earlier runs not driven now, from the database.
    history: Vec<CampaignView>,
    outbox: Outbox,
    ids: RandomIds,
    /// The last message id given to a notice.
    next_msg_id: i64,
}

impl Campaigns {
    /// No campaigns; message ids continue from `first_msg_id` (the clock, so that ids stay
    /// increasing across restarts).
    pub(super) fn new(first_msg_id: i64) -> Campaigns {
        Campaigns {
            live: Vec::new(),
            history: Vec::new(),
            outbox: Outbox::default(),
            ids: RandomIds,
            next_msg_id: first_msg_id,
        }
    }

    /// Reads the campaigns of earlier runs for the history (rebuilding one is pure: it only
    /// derives the snapshot, nothing is sent). One that cannot be read is left out.
    pub(super) fn restore_history(
        &mut self,
        store: &Store,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        for row in store.list_campaigns()? {
            let Ok(persisted) = store.load_campaign(row.id) else {
                continue;
            };
            let Ok(campaign) = Campaign::resume(persisted, now, &|_| false) else {
                continue;
            };
            self.history.push(CampaignView {
                snapshot: campaign.snapshot(),
                spec: campaign.spec().clone(),
                dialects: dialects_of(&campaign),
                timeline: Vec::new(),
                eta_secs: None,
                live: false,
                halted: None,
            });
        }
        Ok(())
    }

    /// How many campaigns are live (their indexes are `0..len`).
    pub(super) fn len(&self) -> usize {
        self.live.len()
    }

    /// Live campaign `idx`, to read.
    pub(super) fn get(&self, idx: usize) -> Option<&LiveCampaign> {
        self.live.get(idx)
    }

    /// The live campaigns, to read.
    pub(super) fn live(&self) -> &[LiveCampaign] {
        &self.live
    }

    /// The devices (module-qualified as targeted) whose records changed in any live campaign
    /// since the last call.
    pub(super) fn take_changed(&mut self) -> Vec<DeviceId> {
        self.live
            .iter_mut()
            .flat_map(|l| l.campaign_mut().take_changed())
            .collect()
    }

    /// The campaigns of earlier runs not driven now.
    pub(super) fn history(&self) -> &[CampaignView] {
        &self.history
    }

    /// The live campaign with this id.
    pub(super) fn position(&self, id: CampaignId) -> Option<usize> {
        self.live.iter().position(|l| l.campaign().id() == id)
    }

    /// The unfinished campaign that targets this device+module, if any.
    pub(super) fn campaign_for(&self, device: &DeviceId) -> Option<usize> {
        self.live
            .iter()
            .position(|l| !l.campaign().state().is_finished() && l.campaign().is_target(device))
    }

    /// The id of the unfinished campaign that targets this device+module, if any.
    pub(super) fn busy_with(&self, device: &DeviceId) -> Option<CampaignId> {
        self.campaign_for(device)
            .and_then(|idx| self.live.get(idx))
            .map(|l| l.campaign().id())
    }

    /// Takes a campaign of the history back to be driven.
    pub(super) fn forget_history(&mut self, id: CampaignId) {
        self.history.retain(|h| h.snapshot.id != id);
    }

    /// Starts driving a campaign; one that begins while the broker is away learns it first.
    /// `downloads`: already granted by the caller when per device. Returns its index.
    pub(super) fn add(
        &mut self,
        campaign: Campaign,
        downloads: Downloads,
        env: &mut Env<'_>,
    ) -> usize {
        self.live.push(LiveCampaign::new(campaign, downloads));
        let idx = self.live.len() - 1;
        if !env.io.is_connected() {
            self.drive(idx, Input::BrokerLost, env);
        }
        idx
    }

    /// Stops driving campaign `id` in this run and sends nothing more for it (another console
    /// took it over: see `campaign_lock.rs`); `--resume` or a restart picks it up again.
    /// Returns whether it was live.
    pub(super) fn halt(&mut self, id: CampaignId, why: String) -> bool {
        match self.live.iter_mut().find(|l| l.campaign().id() == id) {
            Some(live) => {
                live.halt(why);
                true
            }
            None => false,
        }
    }

    /// For the publish benchmark: a live campaign its caller drives with `handle_undriven`
    /// (no I/O, no store).
    #[cfg(feature = "test-support")]
    pub(super) fn add_undriven(&mut self, campaign: Campaign) -> usize {
        self.live
            .push(LiveCampaign::new(campaign, Downloads::AsOffered));
        self.live.len() - 1
    }

    /// For the publish benchmark: feeds one input to campaign `idx` and returns what it asks,
    /// without carrying it out.
    #[cfg(feature = "test-support")]
    pub(super) fn handle_undriven(
        &mut self,
        idx: usize,
        input: Input,
        now: Timestamp,
    ) -> Vec<crate::rollout::Action> {
        match self.live.get_mut(idx) {
            Some(live) => live.campaign_mut().handle(input, now, &mut self.ids),
            None => Vec::new(),
        }
    }

    /// Feeds one input to campaign `idx` and carries out what it asks; a halted campaign is
    /// not driven. Returns whether it asked for anything.
    pub(super) fn drive(&mut self, idx: usize, input: Input, env: &mut Env<'_>) -> bool {
        let now = env.clock.now();
        let Some(live) = self.live.get_mut(idx) else {
            return false;
        };
        if live.is_halted() {
            return false;
        }
        let actions = live.campaign_mut().handle(input, now, &mut self.ids);
        let changed = !actions.is_empty();
        self.execute(idx, actions, env);
        changed
    }

    /// Feeds `input` to every live campaign; returns whether any asked for anything.
    pub(super) fn drive_all(&mut self, input: &Input, env: &mut Env<'_>) -> bool {
        let mut changed = false;
        for idx in 0..self.live.len() {
            changed |= self.drive(idx, input.clone(), env);
        }
        changed
    }

    /// Lets every campaign fire its due timers.
    pub(super) fn tick(&mut self, env: &mut Env<'_>) -> bool {
        let now = env.clock.now();
        let mut changed = false;
        for idx in 0..self.live.len() {
            let due = self.live[idx]
                .campaign()
                .next_deadline()
                .is_some_and(|at| at <= now);
            if due {
                changed |= self.drive(idx, Input::Tick, env);
            }
        }
        changed
    }

    /// When the next campaign timer is due.
    pub(super) fn next_deadline(&self) -> Option<Timestamp> {
        self.live
            .iter()
            .filter_map(|l| l.campaign().next_deadline())
            .min()
    }

    /// Devices the live campaigns are waiting to hear from.
    pub(super) fn devices_in_flight(&self) -> usize {
        self.live
            .iter()
            .map(|l| l.campaign().counts().in_flight())
            .sum()
    }

    /// Gives a campaign just resumed the target-version reports its noticed devices sent in this
    /// run before it was live: they succeeded, and must not be noticed again. A device whose
    /// deadline passed while the console was down has timed out by now (its retry waits for the
    /// retry interval) and succeeds late.
    pub(super) fn replay_versions_heard(&mut self, idx: usize, env: &mut Env<'_>) -> bool {
        let Some(live) = self.live.get(idx) else {
            return false;
        };
        let target = &live.campaign().spec().offer.version;
        let reports: Vec<VersionReport> = live
            .campaign()
            .devices()
            .iter()
            .filter(|rec| rec.attempts > 0 && rec.status != DeviceStatus::Succeeded)
            .filter_map(|rec| env.fleet.version_heard(&rec.device))
            .filter(|report| &report.version == target)
            .cloned()
            .collect();
        let mut changed = false;
        for report in reports {
            changed |= self.drive(idx, Input::Event(Event::Version(report)), env);
        }
        changed
    }

    /// After a topology change (a drone joined or left a dock): the fleet's topology, for the
    /// campaigns that upgrade one device per gateway at a time.
    pub(super) fn refresh_gateways(&mut self, fleet: &FleetState) {
        for live in &mut self.live {
            if live.campaign().has_gateway_limits() {
                set_gateways_from(fleet, live.campaign_mut());
            }
        }
    }

    /// Adds a timeline point to campaign `idx` if its counts moved; returns whether it did.
    pub(super) fn record_timeline(&mut self, idx: usize, now_ms: i64) -> bool {
        self.live
            .get_mut(idx)
            .is_some_and(|live| live.record_timeline(now_ms))
    }

    /// A timeline point for every live campaign whose counts moved; returns whether any did.
    pub(super) fn record_timelines(&mut self, now_ms: i64) -> bool {
        let mut changed = false;
        for live in &mut self.live {
            changed |= live.record_timeline(now_ms);
        }
        changed
    }

    /// The message id for the next notice.
    fn next_msg_id(&mut self) -> i64 {
        self.next_msg_id += 1;
        self.next_msg_id
    }
}

/// The gateway of each target of a one-upgrade-per-gateway dialect (e.g. a DJI drone's dock), as
/// the fleet's topology has it.
pub(super) fn set_gateways_from(fleet: &FleetState, campaign: &mut Campaign) {
    campaign.set_gateways(&|d: &DeviceId| fleet.gateway_of(d));
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::engine::io::IoParts;
    use crate::engine::session_id::SessionClaim;
    use crate::engine::snapshot::BrokerGuard;
    use crate::firmware::FirmwareStore;
    use crate::fleet::inspector::Inspector;
    use crate::protocol::FirmwareOffer;
    use crate::rollout::{CampaignSpec, DialectSettings, Policy, Target};
    use crate::transport::mqtt::{BrokerUrl, LinkOptions, MqttLink};

    /// The parts driving needs, with a link that never connects (its broker accepts the socket
    /// and never answers) and nothing else running.
    struct Rig {
        clock: Clock,
        fleet: FleetState,
        io: Io,
        library: Library,
        alerts: Alerts,
        services: Services,
        _listener: std::net::TcpListener,
        _dir: tempfile::TempDir,
    }

    impl Rig {
        fn new() -> Rig {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let options = LinkOptions::new(BrokerUrl::plain("127.0.0.1", port));
            let (link, _inbound) = MqttLink::start(options).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let (import_tx, _) = crate::engine::library::channel();
            Rig {
                clock: Clock::new(),
                fleet: FleetState::default(),
                io: Io::new(IoParts {
                    link,
                    http: None,
                    download_key: None,
                    external_url: None,
                    firmware_base: None,
                    inspector: Arc::new(Mutex::new(Inspector::new(100))),
                    session: SessionClaim::transient(),
                    broker: None,
                    broker_label: String::new(),
                    broker_guard: BrokerGuard::External,
                }),
                library: Library::new(FirmwareStore::in_data_dir(dir.path()), import_tx),
                alerts: Alerts::default(),
                services: Services::for_registered(),
                _listener: listener,
                _dir: dir,
            }
        }

        fn env(&mut self) -> Env<'_> {
            Env {
                clock: &self.clock,
                fleet: &self.fleet,
                io: &mut self.io,
                library: &self.library,
                alerts: &mut self.alerts,
                services: &mut self.services,
            }
        }
    }

    fn campaign(id: CampaignId) -> Campaign {
        let spec = CampaignSpec {
            name: "test".into(),
            offer: FirmwareOffer {
                version: "2.0".into(),
                url: "http://127.0.0.1:1/fw.bin".into(),
                size: 3,
                md5: "5289df737df57326fcdd22597afb1fac".into(),
                sha256: "039058c6f2c0cb492c533b0a4d14ef77cc0f78abccced5287d84a1a2011cfb81".into(),
                checksum: "06000000".into(),
                file_name: "fw.bin".into(),
                description: "test".into(),
            },
            module: None,
            settings: DialectSettings::default(),
            policy: Policy::default(),
        };
        let targets = vec![Target {
            device: "aliyun:pk/d1".parse().unwrap(),
            version: Some("1.0".into()),
            online: true,
            heard_at: None,
        }];
        Campaign::new(id, spec, targets, Timestamp::from_millis(0)).unwrap()
    }

    #[tokio::test]
    async fn a_campaign_whose_write_is_refused_is_halted_and_neither_driven_nor_sent_for() {
        let mut rig = Rig::new();
        // The database has no row for the campaign: writing its transitions is refused.
        let mut store = Store::open_in_memory().unwrap();
        let mut campaigns = Campaigns::new(0);
        let idx = campaigns.add(
            campaign(CampaignId(7)),
            Downloads::AsOffered,
            &mut rig.env(),
        );
        assert!(campaigns.drive(idx, Input::Start, &mut rig.env()));
        campaigns.drive_all(&Input::BrokerBack, &mut rig.env());
        assert!(
            !campaigns.outbox.is_empty(),
            "the start queued its transitions"
        );

        let sends = campaigns
            .commit_turn(&mut store, &mut rig.alerts, 0)
            .expect("the outbox had something");
        assert!(
            sends.is_empty(),
            "nothing of a campaign whose write failed is sent"
        );
        assert!(campaigns.get(idx).is_some_and(LiveCampaign::is_halted));
        assert!(rig.alerts.to_vec().iter().any(|a| {
            a.text
                .starts_with("campaign 7 stopped: the database refused a write")
        }));

        // Halted for good: inputs change nothing and queue nothing.
        for input in [
            Input::Tick,
            Input::BrokerLost,
            Input::BrokerBack,
            Input::Cancel,
        ] {
            assert!(!campaigns.drive(idx, input, &mut rig.env()));
        }
        assert!(
            campaigns
                .commit_turn(&mut store, &mut rig.alerts, 0)
                .is_none()
        );
        assert!(campaigns.live()[idx].halted().is_some());
    }
}
