//! The demo (`ota-console --demo`): a story told in about two minutes with the real engine and
//! simulator. A fleet of every dialect upgrades from 1.0.0 to 2.0.0 through a canary and one
//! wave, and a small cast of devices each acts one way an upgrade ends: the download breaks
//! off, the digest does not match, flashing fails, a dock that answers by reply refuses with
//! its code, a device stays silent until it times out, and one fails once and recovers on the
//! retry. Nothing is left to luck: each member of the cast is a fleet of one device whose
//! faults are certain (odds 1) or scripted ([`crate::sim::FaultScript`]).
//!
//! Owns: the demo's fleets, its policy (demo-sized timeouts), its campaign request, its data
//! directory (cleared at every start, and only when it is the demo's own), and replaying it.
//! Names no dialect: the cast is cast by capabilities.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;

use crate::device_id::DeviceId;
use crate::engine::{CampaignRequest, EngineHandle};
use crate::i18n::tr;
use crate::protocol::{Acknowledgement, registry};
use crate::rollout::{CampaignId, CanarySize, DeviceStatus, Policy, RateLimit};
use crate::sim::{
    Behaviour, Fault, FaultOdds, FaultScript, SimConfig, SimFactory, SimFleet, SimLogins, UnitSpec,
};

/// The version the simulated devices start on, and the demo package's version.
pub const FROM_VERSION: &str = "1.0.0";
pub const TO_VERSION: &str = "2.0.0";
/// Size of the demo firmware file.
const FIRMWARE_BYTES: usize = 4 * 1024 * 1024;
/// The demo firmware's file name inside the demo directory.
const FIRMWARE_FILE: &str = "demo-firmware-2.0.0.bin";
/// Marks a directory the demo made, so that clearing it never touches anything else.
const MARKER: &str = ".ota-console-demo";
/// How long a start waits for the main fleet to be heard before starting the story anyway.
const FLEET_HEARD_WAIT: Duration = Duration::from_secs(20);

/// One member of the cast: how its upgrade ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Story {
    /// The download breaks off half-way, on the first attempt and on the retry.
    DownloadFails,
    /// The bytes arrive corrupted: the device's digest check fails.
    DigestMismatch,
    /// Writing to flash fails after the install.
    FlashFails,
    /// A device answering by reply refuses the upgrade with an error code (a dock whose
    /// aircraft is flying, or whose battery is low).
    Rejected,
    /// It reports its version but never answers a notice: the device timeout ends it.
    Silent,
    /// The first download breaks off; the retry succeeds.
    RetryRecovers,
}

impl Story {
    pub const ALL: [Story; 6] = [
        Story::DownloadFails,
        Story::DigestMismatch,
        Story::FlashFails,
        Story::Rejected,
        Story::Silent,
        Story::RetryRecovers,
    ];

    /// How the campaign ends for this member.
    pub fn outcome(self) -> DeviceStatus {
        match self {
            Story::DownloadFails | Story::DigestMismatch | Story::FlashFails => {
                DeviceStatus::Failed
            }
            Story::Rejected => DeviceStatus::Rejected,
            Story::Silent => DeviceStatus::TimedOut,
            Story::RetryRecovers => DeviceStatus::Succeeded,
        }
    }

    /// The story in a few words, in the language in force.
    pub fn words(self) -> String {
        match self {
            Story::DownloadFails => tr!("cli.demo.story.download_fails"),
            Story::DigestMismatch => tr!("cli.demo.story.digest_mismatch"),
            Story::FlashFails => tr!("cli.demo.story.flash_fails"),
            Story::Rejected => tr!("cli.demo.story.rejected"),
            Story::Silent => tr!("cli.demo.story.silent"),
            Story::RetryRecovers => tr!("cli.demo.story.retry_recovers"),
        }
    }

    /// Its devices' name prefix: a presenter reads the story on the tile.
    fn name_prefix(self) -> &'static str {
        match self {
            Story::DownloadFails => "fails-download",
            Story::DigestMismatch => "fails-digest",
            Story::FlashFails => "fails-flash",
            Story::Rejected => "refuses",
            Story::Silent => "silent",
            Story::RetryRecovers => "recovers",
        }
    }

    fn faults(self) -> FaultOdds {
        let certain = FaultOdds::default();
        match self {
            Story::DownloadFails => FaultOdds {
                download: 1.0,
                ..certain
            },
            Story::DigestMismatch => FaultOdds {
                verify: 1.0,
                ..certain
            },
            Story::FlashFails => FaultOdds {
                flash: 1.0,
                ..certain
            },
            Story::Rejected => FaultOdds {
                reject: 1.0,
                ..certain
            },
            Story::Silent => FaultOdds {
                silent: 1.0,
                ..certain
            },
            Story::RetryRecovers => FaultOdds {
                script: Some(FaultScript::new(vec![Fault::Download])),
                ..certain
            },
        }
    }

    /// The simulator that acts it: a refusal needs a dialect answered by reply (the others
    /// have no way to refuse); every other story is acted by a dialect acknowledged by its
    /// first report, whose error table words each failure differently. `None` if no built-in
    /// simulator fits.
    fn factory(self) -> Option<&'static dyn SimFactory> {
        let by_reply = |f: &&'static dyn SimFactory| {
            matches!(
                registry::capabilities(f.dialect()).ack,
                Acknowledgement::ByReply(_)
            )
        };
        let factories = registry::sim_factories();
        match self {
            Story::Rejected => factories.into_iter().find(by_reply),
            _ => factories.into_iter().find(|f| !by_reply(f)),
        }
    }
}

/// Downloads slow enough that progress is visible, installs that take a moment.
fn demo_behaviour() -> Behaviour {
    Behaviour {
        bandwidth_bytes_per_sec: Some(1024 * 1024),
        install: Duration::from_secs(3),
        ..Behaviour::default()
    }
}

/// The demo's main fleet: every kind of unit of every dialect's simulator (as many as each
/// kind's `demo` says), all healthy: the failures are the cast's.
pub fn demo_fleet(broker_url: &str) -> SimConfig {
    SimConfig {
        broker_url: broker_url.to_owned(),
        units: crate::sim::demo_units(&registry::sim_factories()),
        version: FROM_VERSION.into(),
        name_prefix: "demo".into(),
        seed: 2026,
        behaviour: demo_behaviour(),
        ..SimConfig::default()
    }
}

/// The fleet of one that acts `story`, `None` when no simulator can act it.
pub fn story_fleet(story: Story, broker_url: &str) -> Option<SimConfig> {
    let factory = story.factory()?;
    let unit = UnitSpec::of(factory, 1)?;
    let unit = match &unit.kind.members {
        // A gateway's story is its own: one sub-device keeps the fleet small.
        Some(_) => unit.with_members(1),
        None => unit,
    };
    Some(SimConfig {
        broker_url: broker_url.to_owned(),
        units: vec![unit],
        version: FROM_VERSION.into(),
        name_prefix: story.name_prefix().into(),
        seed: 2026,
        behaviour: Behaviour {
            faults: story.faults(),
            ..demo_behaviour()
        },
        ..SimConfig::default()
    })
}

/// Demo-sized timeouts: a canary of one, then everything else in one wave; a silent device
/// times out after 30 s and is tried once more; no abort threshold, so every story is told.
pub fn demo_policy() -> Policy {
    Policy {
        canary: CanarySize::Count(1),
        wave_size: 0,
        success_threshold_percent: 100,
        rate: RateLimit {
            per_minute: 600,
            burst: 20,
        },
        max_in_flight: 20,
        device_timeout_secs: 30,
        retries: 1,
        retry_interval_secs: 5,
        abort: None,
        ..Policy::default()
    }
}

/// Makes `dir` an empty demo directory: created if missing, cleared if the demo made it (its
/// marker, or the database and firmware file the demo of earlier versions left there). A
/// directory of anything else is refused, never cleared.
pub fn fresh_demo_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let ours = dir.join(MARKER).exists()
            || (dir.join("ota-console.db").exists() && dir.join(FIRMWARE_FILE).exists());
        let empty = std::fs::read_dir(dir)
            .map_err(io_failed(|why| {
                tr!("cli.demo.cannot_read", path = dir.display(), why = why)
            }))?
            .next()
            .is_none();
        if !ours && !empty {
            anyhow::bail!(tr!("cli.demo.not_ours", dir = dir.display()));
        }
        std::fs::remove_dir_all(dir).map_err(io_failed(|why| {
            tr!("cli.demo.cannot_clear", path = dir.display(), why = why)
        }))?;
    }
    std::fs::create_dir_all(dir).map_err(io_failed(|why| {
        tr!("cli.demo.cannot_create", path = dir.display(), why = why)
    }))?;
    // A file for whoever looks into the directory, not a message: English like the README.
    std::fs::write(
        dir.join(MARKER),
        "Made by `ota-console --demo`, which clears this directory at every start.\n",
    )
    .map_err(io_failed(|why| {
        tr!("cli.demo.cannot_write", path = dir.display(), why = why)
    }))
}

/// An I/O failure in words: `say` makes the sentence from the OS's reason in the language in
/// force.
fn io_failed(say: impl FnOnce(String) -> String) -> impl FnOnce(std::io::Error) -> anyhow::Error {
    move |e| anyhow::anyhow!(say(crate::i18n::io_error(&e)))
}

/// The demo firmware: the same deterministic, incompressible-looking bytes every time.
fn write_firmware(path: &Path) -> anyhow::Result<()> {
    let mut state: u32 = 0x2026_1123;
    let bytes: Vec<u8> = (0..FIRMWARE_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect();
    std::fs::write(path, bytes).map_err(io_failed(|why| {
        tr!("cli.demo.cannot_write", path = path.display(), why = why)
    }))
}

/// The fleets of one telling of the story.
struct Fleets {
    main: SimFleet,
    /// Held until the campaign names them ([`SimFleet::start_held`]).
    cast: Vec<(Story, SimFleet)>,
}

/// A running demo: its fleets, its package, replaying.
pub struct Demo {
    data_dir: PathBuf,
    broker_url: String,
    /// The broker checks logins: each fleet is given credentials in the data directory.
    secure: bool,
    package_sha256: String,
    fleets: tokio::sync::Mutex<Option<Fleets>>,
    /// A start or replay is under way: further clicks are ignored until it is done.
    busy: AtomicBool,
    /// Why the last start or replay failed, until the window takes it.
    error: std::sync::Mutex<Option<String>>,
}

impl std::fmt::Debug for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demo")
            .field("data_dir", &self.data_dir)
            .field("broker_url", &self.broker_url)
            .finish_non_exhaustive()
    }
}

impl Demo {
    /// Imports the demo package into `engine` (whose data directory `data_dir` is, made by
    /// [`fresh_demo_dir`]) and starts the fleets: the main fleet connects, the cast waits for
    /// [`Demo::start_story`].
    pub async fn launch(
        engine: &EngineHandle,
        data_dir: &Path,
        secure: bool,
    ) -> anyhow::Result<Arc<Demo>> {
        let firmware = data_dir.join(FIRMWARE_FILE);
        write_firmware(&firmware)?;
        let package = engine
            .import_firmware(firmware)
            .await
            .context(tr!("cli.demo.importing"))?;
        let demo = Demo {
            data_dir: data_dir.to_owned(),
            broker_url: engine.broker_url().to_owned(),
            secure,
            package_sha256: package.package.sha256.clone(),
            fleets: tokio::sync::Mutex::new(None),
            busy: AtomicBool::new(false),
            error: std::sync::Mutex::new(None),
        };
        let fleets = demo.start_fleets().await?;
        *demo.fleets.lock().await = Some(fleets);
        Ok(Arc::new(demo))
    }

    async fn start_fleets(&self) -> anyhow::Result<Fleets> {
        let main = SimFleet::start(self.with_logins(demo_fleet(&self.broker_url))?)
            .await
            .context(tr!("cli.demo.starting_fleet"))?;
        let mut cast = Vec::new();
        for story in Story::ALL {
            let Some(config) = story_fleet(story, &self.broker_url) else {
                tracing::warn!("{}", tr!("cli.demo.story_left_out", story = story.words()));
                continue;
            };
            let fleet = SimFleet::start_held(self.with_logins(config)?)
                .await
                .context(tr!("cli.demo.starting_cast"))?;
            cast.push((story, fleet));
        }
        Ok(Fleets { main, cast })
    }

    fn with_logins(&self, mut config: SimConfig) -> anyhow::Result<SimConfig> {
        if self.secure {
            // A demo broker reachable from the network stays secure: its devices get credentials.
            let (logins, _) = SimLogins::provision(&self.data_dir, &config)
                .context(tr!("cli.demo.credentials"))?;
            config.logins = Arc::new(logins);
        }
        Ok(config)
    }

    /// The cast's devices, each with the story it acts.
    pub async fn cast(&self) -> Vec<(Story, Vec<DeviceId>)> {
        match &*self.fleets.lock().await {
            Some(f) => f.cast.iter().map(|(s, f)| (*s, f.device_ids())).collect(),
            None => Vec::new(),
        }
    }

    /// The main fleet's devices.
    pub async fn main_devices(&self) -> Vec<DeviceId> {
        match &*self.fleets.lock().await {
            Some(f) => f.main.device_ids(),
            None => Vec::new(),
        }
    }

    /// Starts the demo campaign over the main fleet and the cast, then lets the cast connect:
    /// devices not heard yet go last, so the canary is always one of the healthy fleet.
    pub async fn start_story(&self, engine: &EngineHandle) -> anyhow::Result<CampaignId> {
        self.wait_fleet_heard(engine).await;
        let fleets = self.fleets.lock().await;
        let fleets = fleets.as_ref().context(tr!("cli.demo.fleet_not_running"))?;
        let mut targets = fleets.main.device_ids();
        for (_, fleet) in &fleets.cast {
            targets.extend(fleet.device_ids());
        }
        let request = CampaignRequest {
            // Named in the presenter's language: the window shows it as the campaign's name.
            name: tr!(
                "cli.demo.campaign_name",
                from = FROM_VERSION,
                to = TO_VERSION
            ),
            package_sha256: self.package_sha256.clone(),
            version: TO_VERSION.to_owned(),
            module: None,
            description: tr!("cli.demo.description"),
            targets,
            policy: demo_policy(),
            settings: Default::default(),
            download_url: None,
        };
        let id = engine
            .start_campaign(request)
            .await
            .context(tr!("cli.demo.starting_campaign"))?;
        for (_, fleet) in &fleets.cast {
            fleet.release();
        }
        Ok(id)
    }

    /// Tells the story again: cancels the unfinished campaigns, replaces every simulated
    /// device by a fresh one on 1.0.0 and starts the campaign.
    pub async fn replay(&self, engine: &EngineHandle) -> anyhow::Result<CampaignId> {
        for campaign in &engine.snapshot().campaigns {
            if !campaign.snapshot.state.is_finished() {
                let _ = engine.send(crate::engine::Command::Cancel(campaign.snapshot.id));
            }
        }
        {
            let mut fleets = self.fleets.lock().await;
            if let Some(old) = fleets.take() {
                old.main.shutdown().await;
                for (_, f) in old.cast {
                    f.shutdown().await;
                }
            }
            *fleets = Some(self.start_fleets().await?);
        }
        self.start_story(engine).await
    }

    /// Waits (bounded) until no campaign runs and the engine has heard every device of the
    /// main fleet on 1.0.0, so that the canary is chosen among devices it knows.
    async fn wait_fleet_heard(&self, engine: &EngineHandle) {
        let main = self.main_devices().await;
        let mut watch = engine.watch();
        let heard = async {
            loop {
                let ready = {
                    let snap = watch.borrow_and_update();
                    let idle = snap
                        .campaigns
                        .iter()
                        .all(|c| c.snapshot.state.is_finished());
                    idle && main.iter().all(|id| {
                        snap.devices.iter().any(|row| {
                            &row.record.id == id
                                && row.record.online
                                && row.record.version(None) == Some(FROM_VERSION)
                        })
                    })
                };
                if ready || watch.changed().await.is_err() {
                    return;
                }
            }
        };
        if tokio::time::timeout(FLEET_HEARD_WAIT, heard).await.is_err() {
            tracing::warn!(
                "{}",
                tr!(
                    "cli.demo.fleet_not_heard",
                    waited = humantime::format_duration(FLEET_HEARD_WAIT)
                )
            );
        }
    }

    /// Runs `start_story` (or `replay`) on `runtime` unless one is under way; an error is
    /// logged and kept for [`Demo::take_error`].
    pub fn spawn(
        self: &Arc<Self>,
        runtime: &tokio::runtime::Handle,
        engine: EngineHandle,
        replay: bool,
    ) {
        if self.busy.swap(true, Ordering::AcqRel) {
            return;
        }
        let demo = self.clone();
        runtime.spawn(async move {
            let result = if replay {
                demo.replay(&engine).await
            } else {
                demo.start_story(&engine).await
            };
            if let Err(e) = result {
                let why = super::words::chain(&e);
                let text = tr!("cli.demo.could_not_start", why = why);
                tracing::error!("{text}");
                if let Ok(mut error) = demo.error.lock() {
                    *error = Some(text);
                }
            }
            demo.busy.store(false, Ordering::Release);
        });
    }

    /// Why the last start or replay failed; `None` once taken.
    pub fn take_error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|mut e| e.take())
    }

    /// A start or replay is under way.
    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// Stops every simulated device.
    pub async fn shutdown(&self) {
        if let Some(old) = self.fleets.lock().await.take() {
            old.main.shutdown().await;
            for (_, f) in old.cast {
                f.shutdown().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_fleet_has_every_kind_of_unit_and_no_faults() {
        let cfg = demo_fleet("mqtt://127.0.0.1:1883");
        let units: Vec<_> = cfg
            .units
            .iter()
            .map(|u| (u.kind.flag, u.count, u.members))
            .collect();
        // 24 Alibaba devices, 8 FogCloud devices, 2 gateways of 8, 4 docks, 6 AWS things.
        assert_eq!(
            units,
            [
                ("aliyun", 24, 0),
                ("fogcloud", 8, 0),
                ("fogcloud-gateways", 2, 8),
                ("dji-docks", 4, 0),
                ("aws", 6, 0)
            ]
        );
        assert_eq!(cfg.behaviour.faults, FaultOdds::default());
        cfg.validate().unwrap();
    }

    #[test]
    fn every_story_has_an_actor_of_one_unit() {
        for story in Story::ALL {
            let cfg = story_fleet(story, "mqtt://127.0.0.1:1883")
                .unwrap_or_else(|| panic!("{story:?} has no actor"));
            assert_eq!(cfg.units.len(), 1, "{story:?}");
            assert_eq!(cfg.units[0].count, 1, "{story:?}");
            cfg.validate().unwrap();
        }
        let refuses = story_fleet(Story::Rejected, "mqtt://127.0.0.1:1883").unwrap();
        assert!(matches!(
            registry::capabilities(refuses.units[0].factory.dialect()).ack,
            Acknowledgement::ByReply(_)
        ));
    }

    #[test]
    fn the_demo_policy_is_valid_and_short() {
        let policy = demo_policy();
        policy.validate().unwrap();
        assert!(policy.device_timeout_secs * 2 + policy.retry_interval_secs < 120);
    }

    #[test]
    fn only_the_demos_own_directory_is_cleared() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("demo");
        fresh_demo_dir(&dir).unwrap();
        std::fs::write(dir.join("ota-console.db"), b"old campaign").unwrap();
        fresh_demo_dir(&dir).unwrap();
        assert!(!dir.join("ota-console.db").exists());
        assert!(dir.join(MARKER).exists());

        let theirs = root.path().join("theirs");
        std::fs::create_dir_all(&theirs).unwrap();
        std::fs::write(theirs.join("notes.txt"), b"keep me").unwrap();
        assert!(fresh_demo_dir(&theirs).is_err());
        assert_eq!(std::fs::read(theirs.join("notes.txt")).unwrap(), b"keep me");

        // What the demo of earlier versions left (no marker) is the demo's too.
        let old = root.path().join("old");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("ota-console.db"), b"").unwrap();
        std::fs::write(old.join(FIRMWARE_FILE), b"").unwrap();
        fresh_demo_dir(&old).unwrap();
        assert!(!old.join("ota-console.db").exists());
    }
}
